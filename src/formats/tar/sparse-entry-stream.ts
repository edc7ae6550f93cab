/**
 * A GNU sparse tar entry (old GNU `S` headers, or PAX sparse 0.0, 0.1 and 1.0, as `tar --sparse`
 * writes them) read back as the whole file it stands for: its stored data segments with the holes
 * between them filled with zeros, `layout.realSize` bytes in all. For consumers that want a byte
 * stream (a disk image in a registry layer) rather than a file to write at offsets.
 */
import { Readable } from 'node:stream';
import { SparsePlacer, type FileLayout } from './sparse-layout.js';

/** Shared, never written to: holes are handed out as slices of it. */
const ZEROS = Buffer.alloc(1 << 20);

export function sparseEntryStream(entry: AsyncIterable<Buffer>, layout: FileLayout, stored: number, bad: (why: string) => Error): Readable {
  return Readable.from(expand(entry, layout, stored, bad), { objectMode: false });
}

/**
 * Holes are handed out this much at a time, with a turn of the event loop in between: a hole of
 * many GiB is only zeros to the consumer, which takes them without I/O, so without the turn a
 * signal or the metrics server would wait until the whole hole had gone by.
 */
const HOLE_SLICE = 64 * ZEROS.length;

async function* expand(entry: AsyncIterable<Buffer>, layout: FileLayout, stored: number, bad: (why: string) => Error): AsyncGenerator<Buffer> {
  const placer = new SparsePlacer(layout, stored, bad);
  let position = 0;
  // Segments come in order and do not overlap (checkSegments): what lies between them is a hole.
  const placed: { offset: number; data: Buffer }[] = [];
  async function* upTo(offset: number): AsyncGenerator<Buffer> {
    while (position < offset) {
      const slice = Math.min(offset - position, HOLE_SLICE);
      for (let done = 0; done < slice; done += ZEROS.length) yield ZEROS.subarray(0, Math.min(ZEROS.length, slice - done));
      position += slice;
      if (position < offset) await new Promise((resolve) => setImmediate(resolve));
    }
  }
  for await (const chunk of entry) {
    placer.place(chunk, (offset, data) => placed.push({ offset, data }));
    // Fresh list per chunk: the consumer may still hold the previous one's buffers.
    for (const { offset, data } of placed.splice(0)) {
      yield* upTo(offset);
      if (data.length > 0) yield data;
      position = offset + data.length;
    }
  }
  placer.finish();
  yield* upTo(layout.realSize);
}
