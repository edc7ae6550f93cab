/** Mutation fuzz of archive extraction (fixed seed, modest count): typed errors and a clean target, or only safe entries inside it. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, type TempDir } from '../../support/tools.js';
import { buildSeedArchives, fuzz } from './tar-fuzz.js';

describe('tar mutation fuzz', () => {
  let tmp: TempDir;
  let seeds: Buffer[];
  before(() => {
    tmp = makeTempDir('tar-fuzz-');
    seeds = buildSeedArchives(tmp.path);
  });
  after(() => tmp.remove());

  it('mutated archives are refused cleanly or extract only inside the target', async () => {
    const count = Number(process.env.TAR_FUZZ_COUNT ?? 600);
    const outcome = await fuzz(seeds, 20261126, count, tmp.path);
    // Both outcomes must occur, or the mutations are not exercising anything.
    assert.ok(outcome.ok > 0 && outcome.rejected > 0, JSON.stringify(outcome));
  });
});
