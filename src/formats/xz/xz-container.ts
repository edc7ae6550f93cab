/**
 * The .xz container (tukaani.org/xz/xz-file-format.txt): stream header and footer, block headers
 * and the index. The decoder splits a stream into its blocks with these, and wraps each block as a
 * stream of its own so that liblzma can decode several blocks at once.
 */
import { crc32 } from 'node:zlib';

export const STREAM_HEADER_SIZE = 12;
export const STREAM_FOOTER_SIZE = 12;
export const HEADER_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const FOOTER_MAGIC = Buffer.from('YZ');
/** Check field sizes by check ID (the low four bits of the stream flags). */
export const CHECK_SIZES = [0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64];

export class XzFormatError extends Error {}

export interface StreamHeader {
  /** The 12 header bytes as they came, for the single-block streams. */
  bytes: Buffer;
  /** The two stream flag bytes. */
  flags: Buffer;
  checkSize: number;
}

export function isStreamHeaderStart(bytes: Buffer): boolean {
  return bytes.subarray(0, HEADER_MAGIC.length).equals(HEADER_MAGIC.subarray(0, Math.min(bytes.length, HEADER_MAGIC.length)));
}

export function parseStreamHeader(bytes: Buffer): StreamHeader {
  if (!bytes.subarray(0, 6).equals(HEADER_MAGIC)) throw new XzFormatError('a stream does not start with the xz magic bytes');
  const flags = bytes.subarray(6, 8);
  if (crc32(flags) !== bytes.readUInt32LE(8)) throw new XzFormatError('the stream header is corrupt (CRC32 mismatch)');
  if (flags[0] !== 0 || (flags[1]! & 0xf0) !== 0) throw new XzFormatError('the stream header has flags this decoder does not know');
  return { bytes: Buffer.from(bytes), flags: Buffer.from(flags), checkSize: CHECK_SIZES[flags[1]! & 0x0f]! };
}

/** Reads a multibyte integer at `offset`; canonical (minimal) encodings only, as liblzma requires. */
export function readVli(bytes: Buffer, offset: number, end: number): { value: number; next: number } {
  let value = 0;
  for (let i = 0; i < 9 && offset + i < end; i++) {
    const byte = bytes[offset + i]!;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) {
      if (byte === 0 && i > 0) break; // not minimal
      if (!Number.isSafeInteger(value)) break;
      return { value, next: offset + i + 1 };
    }
  }
  throw new XzFormatError('a block header holds an invalid size field');
}

/** A multibyte integer's bytes, as a conforming encoder writes them. */
export function encodeVli(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return out;
}

/** The real size of a block header from its first byte (0 means the index starts instead). */
export function blockHeaderSize(firstByte: number): number {
  return (firstByte + 1) * 4;
}

export interface BlockInfo {
  headerSize: number;
  /** Both undefined when the encoder did not record them (single-threaded xz). */
  compressedSize?: number;
  uncompressedSize?: number;
  /** The LZMA2 dictionary size: the memory a decoder of this block allocates. */
  dictionarySize: number;
}

const LZMA2_FILTER = 0x21;

/** LZMA2's one property byte → dictionary size (xz-file-format §5.3.1). */
function lzma2DictionarySize(bits: number): number {
  if (bits > 40) throw new XzFormatError('a block header declares an invalid LZMA2 dictionary size');
  return bits === 40 ? 2 ** 32 - 1 : (2 | (bits & 1)) * 2 ** (Math.floor(bits / 2) + 11);
}

export function parseBlockHeader(header: Buffer): BlockInfo {
  const size = header.length;
  if (crc32(header.subarray(0, size - 4)) !== header.readUInt32LE(size - 4)) {
    throw new XzFormatError('a block header is corrupt (CRC32 mismatch)');
  }
  const flags = header[1]!;
  if ((flags & 0x3c) !== 0) throw new XzFormatError('a block header has flags this decoder does not know');
  let at = 2;
  const info: BlockInfo = { headerSize: size, dictionarySize: 2 ** 32 - 1 };
  if (flags & 0x40) {
    const field = readVli(header, at, size - 4);
    if (field.value === 0) throw new XzFormatError('a block header declares an empty compressed size');
    info.compressedSize = field.value;
    at = field.next;
  }
  if (flags & 0x80) {
    const field = readVli(header, at, size - 4);
    info.uncompressedSize = field.value;
    at = field.next;
  }
  for (let filter = 0; filter <= (flags & 0x03); filter++) {
    const id = readVli(header, at, size - 4);
    const propsSize = readVli(header, id.next, size - 4);
    at = propsSize.next + propsSize.value;
    if (at > size - 4) throw new XzFormatError('a block header has a filter list longer than the header');
    if (id.value === LZMA2_FILTER && propsSize.value === 1) info.dictionarySize = lzma2DictionarySize(header[at - 1]!);
  }
  return info;
}

/** Where a sized block ends: header, compressed data, padding to 4 bytes, check. */
export function blockSizes(info: BlockInfo, checkSize: number): { unpadded: number; total: number } {
  const unpadded = info.headerSize + info.compressedSize! + checkSize;
  return { unpadded, total: Math.ceil((info.headerSize + info.compressedSize!) / 4) * 4 + checkSize };
}

export interface IndexRecord {
  unpadded: number;
  uncompressed: number;
}

/** The index for these records, byte for byte as a conforming encoder writes it. */
export function encodeIndex(records: readonly IndexRecord[]): Buffer {
  const bytes = [0x00, ...encodeVli(records.length)];
  for (const record of records) bytes.push(...encodeVli(record.unpadded), ...encodeVli(record.uncompressed));
  while (bytes.length % 4 !== 0) bytes.push(0);
  const body = Buffer.from(bytes);
  const out = Buffer.alloc(body.length + 4);
  body.copy(out);
  out.writeUInt32LE(crc32(body), body.length);
  return out;
}

export function encodeFooter(indexSize: number, flags: Buffer): Buffer {
  const footer = Buffer.alloc(STREAM_FOOTER_SIZE);
  footer.writeUInt32LE(indexSize / 4 - 1, 4);
  flags.copy(footer, 8);
  FOOTER_MAGIC.copy(footer, 10);
  footer.writeUInt32LE(crc32(footer.subarray(4, 10)), 0);
  return footer;
}
