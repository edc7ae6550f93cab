/**
 * The uncompressed size an .xz file declares, read from its end the way `xz --list` does: each
 * stream's footer points back to its index, whose records give every block's sizes. Only the
 * footers and indexes are read (a few KiB, even over HTTP Range), so a raw.xz image's size is
 * known before its data is decompressed: a volume too small fails first, `info` can say it.
 *
 * Anything that does not add up gives `undefined` (the size is then learned while decoding, and
 * the decoder reports what is wrong); CRCs are checked so a garbled tail is never believed.
 */
import { crc32 } from 'node:zlib';
import type { RandomAccessReader } from '../../sources/source.js';
import { CHECK_SIZES, HEADER_MAGIC, readVli, STREAM_FOOTER_SIZE, STREAM_HEADER_SIZE } from './xz-container.js';

/** Bounds on what a hostile tail can make us read: index size, streams, padding scanned. */
const MAX_INDEX_BYTES = 16 << 20;
const MAX_STREAMS = 1024;
const MAX_PADDING_BYTES = 1 << 20;
/** Padding is scanned from the end in windows of this size. */
const PADDING_WINDOW = 64 << 10;

export async function xzDeclaredSize(reader: RandomAccessReader): Promise<number | undefined> {
  try {
    let end = reader.size;
    let total = 0;
    for (let streams = 0; end > 0; streams++) {
      if (streams === MAX_STREAMS) return undefined;
      end = await skipStreamPadding(reader, end);
      const stream = await readStreamBackwards(reader, end);
      if (!stream) return undefined;
      total += stream.uncompressed;
      end = stream.start;
    }
    return Number.isSafeInteger(total) ? total : undefined;
  } catch {
    return undefined; // a read that failed: the decoder will say what is wrong, if anything
  }
}

/** Stream padding is zero bytes in multiples of four between and after streams; read in windows, from the end. */
async function skipStreamPadding(reader: RandomAccessReader, end: number): Promise<number> {
  let at = end;
  while (at >= 4 && end - at < MAX_PADDING_BYTES) {
    const from = Math.max(0, at - PADDING_WINDOW);
    const window = await reader.read(from, at - from);
    if (window.length !== at - from) return at;
    let zeros = window.length;
    while (zeros >= 4 && window.readUInt32LE(zeros - 4) === 0) zeros -= 4;
    at = from + zeros;
    if (zeros > 0) break; // something that is not padding: the stream's footer ends here
  }
  // Padding is whole 4-byte words: a remainder means these zeros belong to something else.
  return at;
}

/** The stream that ends at `end`: where it starts and what it decompresses to. */
async function readStreamBackwards(reader: RandomAccessReader, end: number): Promise<{ start: number; uncompressed: number } | undefined> {
  if (end < STREAM_HEADER_SIZE + STREAM_FOOTER_SIZE) return undefined;
  const footer = await reader.read(end - STREAM_FOOTER_SIZE, STREAM_FOOTER_SIZE);
  if (footer.length !== STREAM_FOOTER_SIZE || footer.toString('latin1', 10, 12) !== 'YZ') return undefined;
  if (crc32(footer.subarray(4, 10)) !== footer.readUInt32LE(0)) return undefined;
  const indexSize = (footer.readUInt32LE(4) + 1) * 4;
  const indexStart = end - STREAM_FOOTER_SIZE - indexSize;
  if (indexSize > MAX_INDEX_BYTES || indexStart < STREAM_HEADER_SIZE) return undefined;
  const index = await reader.read(indexStart, indexSize);
  if (index.length !== indexSize || index[0] !== 0 || crc32(index.subarray(0, indexSize - 4)) !== index.readUInt32LE(indexSize - 4)) return undefined;

  const checkSize = CHECK_SIZES[footer[9]! & 0x0f]!;
  const records = readVli(index, 1, indexSize - 4);
  let at = records.next;
  let blocks = 0;
  let uncompressed = 0;
  for (let i = 0; i < records.value; i++) {
    const unpadded = readVli(index, at, indexSize - 4);
    const size = readVli(index, unpadded.next, indexSize - 4);
    at = size.next;
    if (unpadded.value <= checkSize) return undefined;
    blocks += Math.ceil(unpadded.value / 4) * 4;
    uncompressed += size.value;
  }
  const start = indexStart - blocks - STREAM_HEADER_SIZE;
  if (start < 0) return undefined;
  // The stream header at the computed start, with the footer's flags: the sizes are the stream's.
  const header = await reader.read(start, STREAM_HEADER_SIZE);
  if (header.length !== STREAM_HEADER_SIZE || !header.subarray(0, 6).equals(HEADER_MAGIC) || !header.subarray(6, 8).equals(footer.subarray(8, 10))) {
    return undefined;
  }
  return { start, uncompressed };
}
