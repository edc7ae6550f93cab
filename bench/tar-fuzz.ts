/**
 * Long fuzz runs of archive extraction: node --import tsx bench/tar-fuzz.ts [count] [seed]
 * Saves the first failing archive to ./tar-fuzz-failure.tar and exits 1.
 */
import { writeFileSync } from 'node:fs';
import { makeTempDir } from '../test/support/tools.js';
import { buildSeedArchives, fuzz } from '../test/targets/archive/tar-fuzz.js';

const count = Number(process.argv[2] ?? 20_000);
const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);
const tmp = makeTempDir('tar-fuzz-bench-');
try {
  const seeds = buildSeedArchives(tmp.path);
  const started = Date.now();
  const outcome = await fuzz(seeds, seed, count, tmp.path);
  console.log(JSON.stringify({ seed, count, ...outcome, seconds: (Date.now() - started) / 1000 }));
} catch (err) {
  const archive = (err as { archive?: Buffer }).archive;
  if (archive) writeFileSync('tar-fuzz-failure.tar', archive);
  console.error(String((err as Error).message ?? err));
  process.exitCode = 1;
} finally {
  tmp.remove();
}
