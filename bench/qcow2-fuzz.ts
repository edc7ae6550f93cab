/**
 * Long fuzz runs of the qcow2 reader: node --import tsx bench/qcow2-fuzz.ts [count] [seed]
 * Saves the first failing image to ./qcow2-fuzz-failure.qcow2 and exits 1.
 */
import { writeFileSync } from 'node:fs';
import { makeTempDir } from '../test/support/tools.js';
import { buildSeedImages, fuzz } from '../test/qcow2/fuzz.js';

const count = Number(process.argv[2] ?? 100_000);
const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);
const tmp = makeTempDir('qcow2-fuzz-bench-');
try {
  const seeds = buildSeedImages(tmp.path);
  const started = Date.now();
  const outcome = await fuzz(seeds, seed, count, tmp.path);
  console.log(JSON.stringify({ seed, count, ...outcome, seconds: (Date.now() - started) / 1000 }));
} catch (err) {
  const image = (err as { image?: Buffer }).image;
  if (image) writeFileSync('qcow2-fuzz-failure.qcow2', image);
  console.error(String((err as Error).message ?? err));
  process.exitCode = 1;
} finally {
  tmp.remove();
}
