/** Byte surgery on real qemu-made images, for hostile and out-of-order cases. */
import { closeSync, openSync, readSync, writeSync, fstatSync } from 'node:fs';

export function readAt(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

export function writeAt(file: string, offset: number, data: Buffer): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

export const u32 = (value: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
};

export const u64 = (value: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(value);
  return b;
};

export interface Layout {
  clusterSize: number;
  l1Offset: number;
  l1Size: number;
  fileSize: number;
}

export function layout(file: string): Layout {
  const head = readAt(file, 0, 72);
  const fd = openSync(file, 'r');
  const fileSize = fstatSync(fd).size;
  closeSync(fd);
  return {
    clusterSize: 2 ** head.readUInt32BE(20),
    l1Size: head.readUInt32BE(36),
    l1Offset: Number(head.readBigUInt64BE(40)),
    fileSize,
  };
}

const OFFSET_MASK = 0x00fffffffffffe00n;

export function l1Entry(file: string, index: number): bigint {
  const { l1Offset } = layout(file);
  return readAt(file, l1Offset + index * 8, 8).readBigUInt64BE(0);
}

export function l2TableOffsetOf(file: string, l1Index: number): number {
  return Number(l1Entry(file, l1Index) & OFFSET_MASK);
}

/** Offset of the first allocated data cluster entry in L2 table `l1Index` and its entry index. */
export function firstL2Entry(file: string, l1Index: number, predicate: (entry: bigint) => boolean): { at: number; entry: bigint } {
  const { clusterSize } = layout(file);
  const table = l2TableOffsetOf(file, l1Index);
  const data = readAt(file, table, clusterSize);
  for (let i = 0; i < clusterSize / 8; i++) {
    const entry = data.readBigUInt64BE(i * 8);
    if (predicate(entry)) return { at: table + i * 8, entry };
  }
  throw new Error('no matching L2 entry');
}

export const isCompressed = (entry: bigint) => (entry & (1n << 62n)) !== 0n;
export const isPlainData = (entry: bigint) => !isCompressed(entry) && (entry & OFFSET_MASK) !== 0n;

/**
 * Moves L2 table `l1Index` to the end of the file (appending a copy and repointing the L1 entry),
 * so its data clusters come before it: the out-of-order layout the one-pass driver must spill.
 */
export function moveL2TableToEnd(file: string, l1Index: number): void {
  const { clusterSize, l1Offset, fileSize } = layout(file);
  const table = readAt(file, l2TableOffsetOf(file, l1Index), clusterSize);
  const newOffset = Math.ceil(fileSize / clusterSize) * clusterSize;
  writeAt(file, newOffset, table);
  writeAt(file, l1Offset + l1Index * 8, u64(BigInt(newOffset)));
}
