/**
 * The internal snapshot table (qcow2.rst, "Snapshots"), read only to list the snapshots as
 * `qemu-img info` does: an import reads the active layer and never a snapshot's tables.
 */
import type { RandomAccessReader } from '../sources/source.js';
import type { Qcow2Header } from './header.js';

/** One entry as `qemu-img info --output=json` shows it, in its key order. */
export interface SnapshotInfo {
  /** Instructions counted by record/replay; absent when the snapshot has none (qemu writes -1). */
  icount?: number;
  'vm-clock-nsec': number;
  name: string;
  'date-sec': number;
  'date-nsec': number;
  'vm-clock-sec': number;
  id: string;
  'vm-state-size': number;
}

const ENTRY_HEADER_BYTES = 40;
/** qemu's limits (QCOW_MAX_SNAPSHOT_EXTRA_DATA, QCOW_MAX_SNAPSHOTS_SIZE): a table past them is corrupt to qemu too. */
const MAX_EXTRA_DATA = 1024;
const MAX_TABLE_BYTES = 64 << 20;
/** The table is read in pieces of this size (the largest entry: header, extra data, two 64 KiB strings). */
const READ_BYTES = 256 << 10;

/**
 * The snapshots, or undefined when the table cannot be read as qemu reads it (past the file's end,
 * past qemu's limits): qemu-img would not open such an image, and info then says only the count.
 */
export async function readSnapshotTable(reader: RandomAccessReader, header: Qcow2Header): Promise<SnapshotInfo[] | undefined> {
  const snapshots: SnapshotInfo[] = [];
  let buffer: Buffer = Buffer.alloc(0);
  let bufferStart = header.snapshotsOffset;
  const bytesAt = async (offset: number, length: number): Promise<Buffer | undefined> => {
    if (offset + length > header.snapshotsOffset + MAX_TABLE_BYTES || offset + length > reader.size) return undefined;
    if (offset < bufferStart || offset + length > bufferStart + buffer.length) {
      bufferStart = offset;
      buffer = await reader.read(offset, Math.min(Math.max(length, READ_BYTES), reader.size - offset));
      if (buffer.length < length) return undefined;
    }
    return buffer.subarray(offset - bufferStart, offset - bufferStart + length);
  };
  let at = header.snapshotsOffset;
  for (let i = 0; i < header.snapshotCount; i++) {
    const entry = await bytesAt(at, ENTRY_HEADER_BYTES);
    if (!entry) return undefined;
    const idBytes = entry.readUInt16BE(12);
    const nameBytes = entry.readUInt16BE(14);
    const extraBytes = entry.readUInt32BE(36);
    if (extraBytes > MAX_EXTRA_DATA) return undefined;
    const rest = await bytesAt(at + ENTRY_HEADER_BYTES, extraBytes + idBytes + nameBytes);
    if (!rest) return undefined;
    const extra = rest.subarray(0, extraBytes);
    const vmClock = entry.readBigUInt64BE(24);
    const icount = extra.length >= 24 ? extra.readBigUInt64BE(16) : -1n;
    snapshots.push({
      icount: icount === 0xffffffffffffffffn || icount < 0n ? undefined : Number(icount),
      'vm-clock-nsec': Number(vmClock % 1_000_000_000n),
      name: rest.toString('utf8', extraBytes + idBytes, extraBytes + idBytes + nameBytes),
      'date-sec': entry.readUInt32BE(16),
      'date-nsec': entry.readUInt32BE(20),
      'vm-clock-sec': Number(vmClock / 1_000_000_000n),
      id: rest.toString('utf8', extraBytes, extraBytes + idBytes),
      'vm-state-size': extra.length >= 8 ? Number(extra.readBigUInt64BE(0)) : entry.readUInt32BE(32),
    });
    // Entries start on 8-byte boundaries.
    at += Math.ceil((ENTRY_HEADER_BYTES + extraBytes + idBytes + nameBytes) / 8) * 8;
  }
  return snapshots;
}
