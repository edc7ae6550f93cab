/**
 * Persistent dirty bitmaps (qcow2.rst, "Bitmaps extension" and "Bitmap directory"), read only to
 * list them as `qemu-img info` does: they track changes for incremental backups and never change
 * the active layer's bytes, so an import drops them as qemu-img convert does.
 */
import type { RandomAccessReader } from '../sources/source.js';
import type { Qcow2Header } from './header.js';

/** One bitmap as `qemu-img info --output=json` shows it, in its key order. */
export interface BitmapInfo {
  flags: ('in-use' | 'auto')[];
  name: string;
  granularity: number;
}

const EXT_BITMAPS = 0x23852875;
/** Autoclear bit 0: the bitmaps extension is consistent (a program without bitmap support clears it). */
const AUTOCLEAR_BITMAPS = 1n;
const EXTENSION_BYTES = 24;
const ENTRY_HEADER_BYTES = 24;
const FLAG_IN_USE = 1;
const FLAG_AUTO = 2;
/** qemu's limits (QCOW2_MAX_BITMAPS, QCOW2_MAX_BITMAP_DIRECTORY_SIZE, BME_MAX_NAME_SIZE, BME_MAX_GRANULARITY_BITS). */
const MAX_BITMAPS = 65535;
const MAX_DIRECTORY_BYTES = 1024 * MAX_BITMAPS;
const MAX_NAME_BYTES = 1023;
const MIN_GRANULARITY_BITS = 9;
const MAX_GRANULARITY_BITS = 31;

/**
 * The bitmaps; none when there are none to list (no extension; or, as qemu sees it, a version 2
 * image or one whose autoclear bit says a program without bitmap support changed it), and none
 * when the directory cannot be read as qemu reads it (qemu-img would not open the image).
 */
export async function readBitmapDirectory(reader: RandomAccessReader, header: Qcow2Header): Promise<BitmapInfo[]> {
  const extension = header.extensions.find((e) => e.type === EXT_BITMAPS);
  if (!extension || header.version < 3 || (header.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) return [];
  if (extension.length < EXTENSION_BYTES) return [];
  const fields = await reader.read(extension.offset, EXTENSION_BYTES);
  if (fields.length < EXTENSION_BYTES) return [];
  const count = fields.readUInt32BE(0);
  const directoryBytes = Number(fields.readBigUInt64BE(8));
  const directoryOffset = Number(fields.readBigUInt64BE(16));
  if (count === 0) return [];
  if (
    count > MAX_BITMAPS ||
    directoryBytes > MAX_DIRECTORY_BYTES ||
    directoryBytes < count * ENTRY_HEADER_BYTES ||
    directoryOffset % header.clusterSize !== 0 ||
    directoryOffset + directoryBytes > reader.size
  ) {
    return [];
  }
  const directory = await reader.read(directoryOffset, directoryBytes);
  if (directory.length < directoryBytes) return [];
  const bitmaps: BitmapInfo[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + ENTRY_HEADER_BYTES > directory.length) return [];
    const flags = directory.readUInt32BE(at + 12);
    const granularityBits = directory.readUInt8(at + 17);
    const nameBytes = directory.readUInt16BE(at + 18);
    const extraBytes = directory.readUInt32BE(at + 20);
    const end = at + ENTRY_HEADER_BYTES + extraBytes + nameBytes;
    if (nameBytes > MAX_NAME_BYTES || end > directory.length) return [];
    if (granularityBits < MIN_GRANULARITY_BITS || granularityBits > MAX_GRANULARITY_BITS) return [];
    bitmaps.push({
      flags: [...(flags & FLAG_IN_USE ? ['in-use' as const] : []), ...(flags & FLAG_AUTO ? ['auto' as const] : [])],
      name: directory.toString('utf8', end - nameBytes, end),
      granularity: 2 ** granularityBits,
    });
    // Entries start on 8-byte boundaries.
    at = Math.ceil(end / 8) * 8;
  }
  return bitmaps;
}
