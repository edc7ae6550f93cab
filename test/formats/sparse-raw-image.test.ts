/**
 * A sparse raw file read by its data ranges: a file that shrinks while it is read fails in words,
 * whichever way its bytes travel (read here, or copied by the native copy between files).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sparseRawImage } from '../../src/formats/sparse-raw-image.js';
import type { DataMap, RandomAccessReader } from '../../src/sources/source.js';

const MiB = 1 << 20;

test('a data range that reads short (the file shrank): "ended before the data", not zeros', async () => {
  const size = 8 * MiB;
  const dataMap: DataMap = {
    nextData: async (offset) => (offset < 6 * MiB ? { start: Math.max(offset, 2 * MiB), end: 6 * MiB } : undefined),
    dataIn: async () => [],
  };
  // The file was cut to 3 MiB after it was measured.
  const reader: RandomAccessReader = {
    size,
    read: async (offset, length) => Buffer.alloc(Math.max(0, Math.min(length, 3 * MiB - offset)), 0x5a),
    close: async () => {},
  };
  const image = await sparseRawImage(reader, dataMap, 'raw', 'disk.raw');
  const read = async () => {
    for await (const _ of image.extents()) void _;
  };
  await assert.rejects(read, /^ImportError: cannot read source file disk\.raw: it ended before the data it should hold \(did it shrink while being read\?\)$/);
});
