import type { Readable } from 'node:stream';
import type { DiskImage, Extent } from '../extents.js';

/**
 * A raw (or ISO) image from a sequential stream: every chunk is an extent at the running offset.
 * `virtualSize` is known only when the transport knew the uncompressed length.
 */
export function rawImage(stream: Readable, format: 'raw' | 'iso', virtualSize?: number): DiskImage {
  return {
    format,
    virtualSize,
    async *extents(): AsyncGenerator<Extent> {
      let offset = 0;
      for await (const chunk of stream) {
        const data = chunk as Buffer;
        yield { offset, length: data.length, data };
        offset += data.length;
      }
    },
  };
}
