import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DiskImage, Extent } from '../../src/extents.js';
import type { DiskTarget } from '../../src/targets/disk-target.js';
import { writeExtents } from '../../src/pipeline/write-extents.js';

const MiB = 1 << 20;

/** A target whose writes take a while and that records how many run at once, and how many bytes. */
function slowTarget() {
  let running = 0;
  let bytes = 0;
  const seen = { maxRunning: 0, maxBytes: 0, written: [] as number[] };
  const target: DiskTarget = {
    kind: 'file',
    path: 'slow',
    capacity: 2 ** 40,
    async write(offset, data) {
      running++;
      bytes += data.length;
      seen.maxRunning = Math.max(seen.maxRunning, running);
      seen.maxBytes = Math.max(seen.maxBytes, bytes);
      await sleep(5);
      running--;
      bytes -= data.length;
      seen.written.push(offset);
      return data.length;
    },
    async zero() {
      return 0;
    },
    async finish(size) {
      return { preallocationApplied: false, size };
    },
    async abort() {},
  };
  return { target, seen };
}

function image(extentSize: number, count: number): DiskImage {
  return {
    format: 'raw',
    virtualSize: extentSize * count,
    async *extents(): AsyncGenerator<Extent> {
      for (let i = 0; i < count; i++) yield { offset: i * extentSize, length: extentSize, data: Buffer.alloc(extentSize, 1) };
    },
  };
}

const plan = { kind: 'file' as const, path: 'slow', capacity: 2 ** 40, create: async () => assert.fail('not used') };

test('1 MiB writes: four in flight, every extent written', async () => {
  const { target, seen } = slowTarget();
  const result = await writeExtents(image(MiB, 12), target, plan, new AbortController().signal);
  assert.equal(result.bytesWritten, 12 * MiB);
  assert.equal(seen.maxRunning, 4);
  assert.deepEqual([...seen.written].sort((a, b) => a - b), Array.from({ length: 12 }, (_, i) => i * MiB));
});

test('4 MiB writes: one at a time (waiting writers spin on the file lock), every extent written', async () => {
  const { target, seen } = slowTarget();
  const result = await writeExtents(image(4 * MiB, 6), target, plan, new AbortController().signal);
  assert.equal(result.bytesWritten, 24 * MiB);
  assert.equal(seen.maxRunning, 1);
  assert.equal(seen.maxBytes, 4 * MiB);
});

test('a write larger than the budget still goes through alone', async () => {
  const { target, seen } = slowTarget();
  await writeExtents(image(16 * MiB, 2), target, plan, new AbortController().signal);
  assert.deepEqual([seen.maxRunning, seen.written.length], [1, 2]);
});
