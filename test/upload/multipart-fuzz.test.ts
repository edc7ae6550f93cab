/** Mutation fuzz of the upload form reader (fixed seed, modest count): one-line refusals, or one run of the body. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildSeedForms, fuzz } from './multipart-fuzz.js';

describe('multipart form mutation fuzz', () => {
  it('mutated forms are refused in one line or give one delimiter-free run of the body', async () => {
    const count = Number(process.env.MULTIPART_FUZZ_COUNT ?? 3000);
    const outcome = await fuzz(buildSeedForms(), 20261127, count);
    // Both outcomes must occur, or the mutations are not exercising anything.
    assert.ok(outcome.ok > 0 && outcome.rejected > 0, JSON.stringify(outcome));
  });
});
