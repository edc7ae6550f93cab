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

async function* expand(entry: AsyncIterable<Buffer>, layout: FileLayout, stored: number, bad: (why: string) => Error): AsyncGenerator<Buffer> {
  const placer = new SparsePlacer(layout, stored, bad);
  let position = 0;
  const pieces: Buffer[] = [];
  const at = (offset: number, data: Buffer) => {
    // Segments come in order and do not overlap (checkSegments), so a gap is a hole.
    for (let hole = offset - position; hole > 0; hole -= ZEROS.length) pieces.push(ZEROS.subarray(0, Math.min(hole, ZEROS.length)));
    if (data.length > 0) pieces.push(data);
    position = offset + data.length;
  };
  for await (const chunk of entry) {
    placer.place(chunk, at);
    // Fresh array per chunk: the consumer may still hold the previous one's buffers.
    yield* pieces.splice(0);
  }
  placer.finish();
  at(layout.realSize, Buffer.alloc(0));
  yield* pieces.splice(0);
}
