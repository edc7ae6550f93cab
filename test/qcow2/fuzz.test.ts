/** Mutation fuzz (fixed seed, modest count): only ImportError comes out, no extent outside the disk. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { makeTempDir, type TempDir } from '../support/tools.js';
import { buildSeedImages, fuzz } from './fuzz.js';

describe('qcow2 mutation fuzz', () => {
  let tmp: TempDir;
  let seeds: Buffer[];
  before(() => {
    tmp = makeTempDir('qcow2-fuzz-');
    seeds = buildSeedImages(tmp.path);
  });
  after(() => tmp.remove());

  it('mutated images give only typed errors or in-bounds extents', async () => {
    const count = Number(process.env.QCOW2_FUZZ_COUNT ?? 2000);
    const outcome = await fuzz(seeds, 20261125, count, tmp.path);
    // Both outcomes must occur, or the mutations are not exercising anything.
    assert.ok(outcome.ok > 0 && outcome.rejected > 0, JSON.stringify(outcome));
  });
});
