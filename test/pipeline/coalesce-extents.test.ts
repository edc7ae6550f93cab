import { test } from 'node:test';
import assert from 'node:assert/strict';
import { coalesceExtents } from '../../src/pipeline/coalesce-extents.js';
import type { Extent } from '../../src/extents.js';

async function collect(extents: Extent[]): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const extent of coalesceExtents((async function* () { yield* extents; })())) out.push(extent);
  return out;
}

test('neighbours on disk and in one buffer become one extent; the merged release releases every part', async () => {
  const chunk = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
  const other = Buffer.alloc(16, 7);
  const released: string[] = [];
  const out = await collect([
    { offset: 0, length: 16, data: chunk.subarray(0, 16), release: () => released.push('a') },
    { offset: 16, length: 16, data: chunk.subarray(16, 32), release: () => released.push('b') },
    { offset: 32, length: 16, data: other }, // adjacent on disk, another buffer
    { offset: 48, length: 16, data: chunk.subarray(48, 64) }, // adjacent on disk, not in memory
    { offset: 64, length: 100 },
    { offset: 164, length: 100 },
    { offset: 300, length: 16, data: chunk.subarray(0, 16) }, // a gap on disk
  ]);
  assert.deepEqual(
    out.map((e) => [e.offset, e.length, e.data ? 'data' : 'zero']),
    [[0, 32, 'data'], [32, 16, 'data'], [48, 16, 'data'], [64, 200, 'zero'], [300, 16, 'data']],
  );
  assert.deepEqual(out[0]!.data, chunk.subarray(0, 32));
  out[0]!.release!();
  assert.deepEqual(released, ['a', 'b']);
});
