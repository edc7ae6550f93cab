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

/** `count` extents of `extentSize` bytes from offset `first`. */
function image(extentSize: number, count: number, first = 0): DiskImage {
  return {
    format: 'raw',
    virtualSize: first + extentSize * count,
    async *extents(): AsyncGenerator<Extent> {
      for (let i = 0; i < count; i++) yield { offset: first + i * extentSize, length: extentSize, data: Buffer.alloc(extentSize, 1) };
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

test('4 MiB extents: written as 2 MiB writes, four in flight (8 MiB), every byte written', async () => {
  const { target, seen } = slowTarget();
  // From 1 MiB on: the first MiB is held back (its own test below), which would cut the first extent.
  const result = await writeExtents(image(4 * MiB, 6, MiB), target, plan, new AbortController().signal);
  assert.equal(result.bytesWritten, 24 * MiB);
  assert.equal(seen.maxRunning, 4);
  assert.equal(seen.maxBytes, 8 * MiB);
  assert.deepEqual([...seen.written].sort((a, b) => a - b), Array.from({ length: 12 }, (_, i) => (2 * i + 1) * MiB));
});

test("a large extent's buffer is released once, after the last of its writes", async () => {
  const { target, seen } = slowTarget();
  const events: string[] = [];
  const big: DiskImage = {
    format: 'raw',
    virtualSize: 17 * MiB,
    async *extents(): AsyncGenerator<Extent> {
      yield { offset: MiB, length: 16 * MiB, data: Buffer.alloc(16 * MiB, 1), release: () => events.push(`released after ${seen.written.length} writes`) };
    },
  };
  await writeExtents(big, target, plan, new AbortController().signal);
  assert.deepEqual(events, ['released after 8 writes']);
  assert.ok(seen.maxBytes <= 8 * MiB, `${seen.maxBytes} bytes in flight`);
});

test('the first MiB is written last, after beforeHead, and each extent\'s buffer is released once written', async () => {
  const { target, seen } = slowTarget();
  const released: number[] = [];
  const extents: DiskImage = {
    format: 'raw',
    virtualSize: 3 * MiB,
    async *extents(): AsyncGenerator<Extent> {
      // Half a MiB, then an extent across the 1 MiB mark, then one past it.
      yield { offset: 0, length: MiB / 2, data: Buffer.alloc(MiB / 2, 1), release: () => released.push(0) };
      yield { offset: MiB / 2, length: MiB, data: Buffer.alloc(MiB, 2), release: () => released.push(MiB / 2) };
      yield { offset: 1.5 * MiB, length: 1.5 * MiB, data: Buffer.alloc(1.5 * MiB, 3), release: () => released.push(1.5 * MiB) };
    },
  };
  let writtenBeforeHead: number[] = [];
  const result = await writeExtents(extents, target, plan, new AbortController().signal, {
    beforeHead: async () => {
      writtenBeforeHead = [...seen.written];
    },
  });
  assert.equal(result.bytesWritten, 3 * MiB);
  assert.deepEqual(writtenBeforeHead.sort((a, b) => a - b), [MiB, 1.5 * MiB], 'only what lies past the first MiB before beforeHead');
  assert.deepEqual(seen.written.slice(-2), [0, MiB / 2], 'the head parts last, in order');
  assert.deepEqual(released.sort((a, b) => a - b), [0, MiB / 2, 1.5 * MiB]);
});
