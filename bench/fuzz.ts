/**
 * Long runs of the mutation fuzzers the tests run at a fixed seed:
 *   node --import tsx bench/fuzz.ts qcow2|tar|xz|multipart [count] [seed]
 * Saves the first failing input to ./<kind>-fuzz-failure.<ext> and exits 1.
 */
import { writeFileSync } from 'node:fs';
import { makeTempDir } from '../test/support/tools.js';

interface Fuzzer {
  // The seeds' shape is each fuzzer's own business.
  seeds(dir: string): any[];
  fuzz(seeds: any[], seed: number, count: number, dir: string): Promise<{ ok: number; rejected: number }>;
}

const FUZZERS: Record<string, { load: () => Promise<Fuzzer>; failure: string }> = {
  qcow2: { load: async () => import('../test/qcow2/fuzz.js').then((m) => ({ seeds: m.buildSeedImages, fuzz: m.fuzz })), failure: 'qcow2-fuzz-failure.qcow2' },
  tar: { load: async () => import('../test/targets/archive/tar-fuzz.js').then((m) => ({ seeds: m.buildSeedArchives, fuzz: m.fuzz })), failure: 'tar-fuzz-failure.tar' },
  xz: { load: async () => import('../test/formats/xz-fuzz.js').then((m) => ({ seeds: m.buildSeedFiles, fuzz: m.fuzz })), failure: 'xz-fuzz-failure.xz' },
  multipart: {
    load: async () => import('../test/upload/multipart-fuzz.js').then((m) => ({ seeds: () => m.buildSeedForms(), fuzz: (seeds, seed, count) => m.fuzz(seeds, seed, count) })),
    failure: 'multipart-fuzz-failure.body',
  },
};

const [kind = '', countText, seedText] = process.argv.slice(2);
const chosen = FUZZERS[kind];
if (!chosen) {
  console.error(`usage: bench/fuzz.ts ${Object.keys(FUZZERS).join('|')} [count] [seed]`);
  process.exit(2);
}
const count = Number(countText ?? 20_000);
const seed = Number(seedText ?? Date.now() % 2 ** 31);
const tmp = makeTempDir(`${kind}-fuzz-bench-`);
try {
  const fuzzer = await chosen.load();
  const seeds = fuzzer.seeds(tmp.path);
  const started = Date.now();
  const outcome = await fuzzer.fuzz(seeds, seed, count, tmp.path);
  console.log(JSON.stringify({ kind, seed, count, ...outcome, seconds: (Date.now() - started) / 1000 }));
} catch (err) {
  const input = (err as { input?: Buffer }).input;
  if (input) writeFileSync(chosen.failure, input);
  console.error(String((err as Error).message ?? err));
  process.exitCode = 1;
} finally {
  tmp.remove();
}
