/** Small helpers for the qcow2 tests: a file as a RandomAccessReader, extents written to a file. */
import { open } from 'node:fs/promises';
import type { DiskImage } from '../../src/extents.js';
import type { RandomAccessReader } from '../../src/sources/source.js';

export async function fileReader(file: string): Promise<RandomAccessReader> {
  const handle = await open(file, 'r');
  const { size } = await handle.stat();
  return {
    size,
    async read(offset, length) {
      const buffer = Buffer.allocUnsafe(Math.max(0, Math.min(length, size - offset)));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      return buffer.subarray(0, bytesRead);
    },
    close: () => handle.close(),
  };
}

export interface WrittenImage {
  /** Bytes the extents covered (data and zero), to check they tile [0, virtualSize). */
  covered: number;
  /** Bytes that came with data (the rest are zero extents). */
  dataBytes: number;
  extents: number;
}

/**
 * Drains `image` into `file` (sparse: extents without data are skipped) and checks the extent
 * contract: inside [0, virtualSize), no overlap, lengths match the data.
 */
export async function writeExtents(image: DiskImage, file: string): Promise<WrittenImage> {
  const out = await open(file, 'w');
  const size = image.virtualSize ?? 0;
  const ranges: [number, number][] = [];
  let count = 0;
  let dataBytes = 0;
  try {
    for await (const extent of image.extents()) {
      count++;
      if (!Number.isSafeInteger(extent.offset) || !Number.isSafeInteger(extent.length) || extent.length <= 0) {
        throw new Error(`bad extent ${extent.offset}+${extent.length}`);
      }
      if (extent.offset < 0 || extent.offset + extent.length > size) {
        throw new Error(`extent ${extent.offset}+${extent.length} outside the virtual size ${size}`);
      }
      if (extent.data && extent.data.length !== extent.length) {
        throw new Error(`extent ${extent.offset}: data ${extent.data.length} bytes, length ${extent.length}`);
      }
      ranges.push([extent.offset, extent.offset + extent.length]);
      if (extent.data) {
        dataBytes += extent.length;
        await out.write(extent.data, 0, extent.length, extent.offset);
      }
    }
    await out.truncate(size);
  } finally {
    await out.close();
  }
  ranges.sort((a, b) => a[0] - b[0]);
  let covered = 0;
  for (let i = 0; i < ranges.length; i++) {
    if (i > 0 && ranges[i]![0] < ranges[i - 1]![1]) throw new Error(`extents overlap at ${ranges[i]![0]}`);
    covered += ranges[i]![1] - ranges[i]![0];
  }
  return { covered, dataBytes, extents: count };
}
