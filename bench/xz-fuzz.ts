/**
 * Long fuzz runs of the .xz container code: node --import tsx bench/xz-fuzz.ts [count] [seed]
 * Saves the first failing file to ./xz-fuzz-failure.xz and exits 1.
 */
import { writeFileSync } from 'node:fs';
import { makeTempDir } from '../test/support/tools.js';
import { buildSeedFiles, fuzz } from '../test/formats/xz-fuzz.js';

const count = Number(process.argv[2] ?? 20_000);
const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);
const tmp = makeTempDir('xz-fuzz-bench-');
try {
  const seeds = buildSeedFiles(tmp.path);
  const started = Date.now();
  const outcome = await fuzz(seeds, seed, count, tmp.path);
  console.log(JSON.stringify({ seed, count, ...outcome, seconds: (Date.now() - started) / 1000 }));
} catch (err) {
  const data = (err as { data?: Buffer }).data;
  if (data) writeFileSync('xz-fuzz-failure.xz', data);
  console.error(String((err as Error).message ?? err));
  process.exitCode = 1;
} finally {
  tmp.remove();
}
