import type { Readable } from 'node:stream';
import type { DiskImage, Extent } from '../extents.js';
import { streamChunks } from '../util/stream-chunks.js';

/**
 * qemu sees a raw file as whole 512-byte sectors, so `qemu-img convert` pads a raw image's tail
 * with zeros up to the next sector; we match it to stay byte-identical.
 */
export function rawVirtualSize(bytes: number): number {
  return Math.ceil(bytes / 512) * 512;
}

/**
 * A raw (or ISO) image from a sequential stream: every chunk is an extent at the running offset.
 * `virtualSize` is known only when the transport knew the uncompressed length.
 */
export function rawImage(stream: Readable, format: 'raw' | 'iso', byteLength?: number): DiskImage {
  return {
    format,
    virtualSize: byteLength === undefined ? undefined : rawVirtualSize(byteLength),
    async *extents(): AsyncGenerator<Extent> {
      let offset = 0;
      for await (const data of streamChunks(stream)) {
        yield { offset, length: data.length, data };
        offset += data.length;
      }
    },
  };
}
