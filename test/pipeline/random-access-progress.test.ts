/**
 * Progress of an image read by random access: by how far through the disk the extents have come,
 * not by the furthest offset read (a raw file's footer check reads its last bytes first, a qcow2's
 * tables may lie near its end), so the bar never jumps to the end before the data is copied.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { openDiskImage } from '../../src/pipeline/open-disk-image.js';
import type { ImportRequest, ProgressReport } from '../../src/request.js';
import type { DataMap, RandomAccessReader } from '../../src/sources/source.js';

const MiB = 1 << 20;

test('a sparse raw read slowly by its data ranges (its footer checked first): progress rises with the data, from well below the end to the end', async () => {
  const size = 256 * MiB;
  const ranges = 64; // data in [2k, 2k + 1) MiB for k < 64: the first half of the file
  const dataMap: DataMap = {
    nextData: async (offset) => {
      const k = Math.floor(offset / (2 * MiB));
      if (offset < k * 2 * MiB + MiB && k < ranges) return { start: offset, end: k * 2 * MiB + MiB };
      return k + 1 < ranges ? { start: (k + 1) * 2 * MiB, end: (k + 1) * 2 * MiB + MiB } : undefined;
    },
    dataIn: async () => [],
  };
  // A slow disk: each read takes 100 ms (eight are in flight at once).
  const reader: RandomAccessReader = {
    size,
    dataMap,
    read: async (offset, length) => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      return Buffer.alloc(Math.max(0, Math.min(length, size - offset)), 0x5a);
    },
    close: async () => {},
  };
  const reports: ProgressReport[] = [];
  const request = { filesystemOverhead: 0, preallocation: false, contentType: 'kubevirt' } as unknown as ImportRequest;
  const { image } = await openDiskImage({ stream: Readable.from([]), size, randomAccess: reader }, request, 'disk.raw', {
    progress: (report) => reports.push(report),
  });
  for await (const extent of image.extents()) extent.release?.();
  assert.ok(reports.length >= 3, `${reports.length} progress reports`);
  assert.ok(reports[0]!.bytes < size / 2, `the first report is at ${reports[0]!.bytes} of ${size} bytes`);
  for (let i = 1; i < reports.length; i++) assert.ok(reports[i]!.bytes >= reports[i - 1]!.bytes, 'progress never goes back');
  assert.deepEqual(reports.at(-1), { bytes: size, total: size });
});
