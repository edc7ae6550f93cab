/** Mutation fuzz of the .xz container code (fixed seed, modest count): clear refusals, or xz -dc's own output. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, type TempDir } from '../support/tools.js';
import { buildSeedFiles, fuzz } from './xz-fuzz.js';

describe('xz mutation fuzz', () => {
  let tmp: TempDir;
  let seeds: Buffer[];
  before(() => {
    tmp = makeTempDir('xz-fuzz-');
    seeds = buildSeedFiles(tmp.path);
  });
  after(() => tmp.remove());

  it('mutated files are refused with a clear error or decode as xz -dc decodes them', async () => {
    const count = Number(process.env.XZ_FUZZ_COUNT ?? 400);
    const outcome = await fuzz(seeds, 20261127, count, tmp.path);
    // Both outcomes must occur, or the mutations are not exercising anything.
    assert.ok(outcome.ok > 0 && outcome.rejected > 0, JSON.stringify(outcome));
  });
});
