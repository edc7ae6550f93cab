/**
 * L1 and L2 entries turned into pieces of the guest disk (qemu docs/interop/qcow2.rst,
 * block/qcow2-cluster.c for the exact rules). Pure functions shared by both drivers.
 */
import os from 'node:os';
import { badInput } from '../errors.js';
import { hex, type Qcow2Header } from './header.js';

/** A run of the guest disk and where its bytes come from. */
export type Piece =
  | { kind: 'zero'; guestOffset: number; length: number }
  | { kind: 'data'; guestOffset: number; length: number; hostOffset: number }
  | {
      kind: 'compressed';
      guestOffset: number;
      /** Guest bytes used (the cluster, cut at the virtual size). */
      length: number;
      hostOffset: number;
      /** Upper bound of the compressed bytes (whole 512-byte sectors). */
      compressedLength: number;
    };

const TWO32 = 2 ** 32;

/** Bits 9..55 of a big-endian u64 at `at`, as a safe number. */
function offsetBits(buf: Buffer, at: number): number {
  return offsetOfWords(buf.readUInt32BE(at), buf.readUInt32BE(at + 4));
}

/** Bits 9..55 of the u64 whose high and low 32-bit halves are given. */
function offsetOfWords(hiWord: number, loWord: number): number {
  return (hiWord & 0x00ffffff) * TWO32 + ((loWord & 0xfffffe00) >>> 0);
}

/** Guest bytes one L2 table maps. */
export function bytesPerL2(header: Qcow2Header): number {
  return header.clusterSize * header.l2Entries;
}

/** Number of L1 entries the virtual size uses (entries past it are never read, as in qemu). */
export function l1EntriesUsed(header: Qcow2Header): number {
  return Math.ceil(header.virtualSize / bytesPerL2(header));
}

/** The L2 table offset of L1 entry `index`, or 0 when that range is unallocated. */
export function l2TableOffset(l1: Buffer, index: number, header: Qcow2Header, sourceSize?: number): number {
  const offset = offsetBits(l1, index * 8);
  if (offset === 0) return 0;
  if (offset % header.clusterSize !== 0) {
    throw badInput(`qcow2 L1 entry ${index} points to an L2 table at unaligned offset ${hex(offset)}: the image is corrupt`);
  }
  if (sourceSize !== undefined && offset + header.clusterSize > sourceSize) {
    throw badInput(
      `qcow2 L1 entry ${index} points to an L2 table at offset ${hex(offset)}, past the end of the ${sourceSize}-byte file: the image is truncated or corrupt`,
    );
  }
  return offset;
}

/**
 * The pieces one L2 table describes, in guest order, for the guest range starting at
 * `firstGuestOffset` (the L1 index times bytesPerL2), cut at the virtual size.
 * Adjacent zero pieces are merged; data pieces are per cluster or subcluster run, or, with
 * `maxDataRun`, runs of them that follow each other in the guest and in the file, up to that many
 * bytes (the random-access driver's reads: one-pass tracks clusters one by one).
 */
export function decodeL2Table(table: Buffer, firstGuestOffset: number, header: Qcow2Header, l2Offset: number, maxDataRun = 0): Piece[] {
  const { clusterSize, virtualSize, extendedL2, version } = header;
  const entries = Math.min(header.l2Entries, Math.ceil((virtualSize - firstGuestOffset) / clusterSize));
  const wordsPerEntry = header.l2EntryBytes / 4;
  // The table as host-order 32-bit words: without TurboFan (bin/cdi-importer), a readUInt32BE call per
  // word made this loop 60 ms of main-thread time for a 2 GiB image's 32 768 entries; indexing a
  // swapped copy takes a fraction of that.
  const words = hostOrderWords(table, entries * wordsPerEntry);
  // Positions in the loop are counted in 512-byte sectors (clusters and subclusters are whole
  // sectors, the virtual size too): byte offsets past 1 GiB are not small integers, and without
  // TurboFan each one is a heap allocation, a few per cluster, half of the garbage of a 2 GiB
  // image's conversion.
  const sectorsPerCluster = clusterSize / 512;
  const firstSector = firstGuestOffset / 512;
  const maxRunSectors = Math.floor(maxDataRun / 512);
  const pieces: Piece[] = [];
  let zeroStart = -1; // sector where the current run of zero clusters began
  const flushZero = (endSector: number) => {
    if (zeroStart >= 0) pieces.push({ kind: 'zero', guestOffset: zeroStart * 512, length: (endSector - zeroStart) * 512 });
    zeroStart = -1;
  };
  const startZero = (sector: number) => {
    if (zeroStart >= 0) return;
    flushData();
    zeroStart = sector;
  };
  let runStart = -1; // the data run being gathered: guest sector, host sector, sectors
  let runHost = 0;
  let runSectors = 0;
  const flushData = () => {
    if (runStart < 0) return;
    const guestOffset = runStart * 512;
    pieces.push({ kind: 'data', guestOffset, length: Math.min(runSectors * 512, virtualSize - guestOffset), hostOffset: runHost * 512 });
    runStart = -1;
  };
  const addData = (sector: number, sectors: number, hostSector: number) => {
    flushZero(sector);
    if (runStart >= 0 && runStart + runSectors === sector && runHost + runSectors === hostSector && runSectors + sectors <= maxRunSectors) {
      runSectors += sectors;
      return;
    }
    flushData();
    runStart = sector;
    runHost = hostSector;
    runSectors = sectors;
  };
  for (let index = 0; index < entries; index++) {
    const sector = firstSector + index * sectorsPerCluster;
    const w = index * wordsPerEntry;
    const hiWord = words[w]!;
    const loWord = words[w + 1]!;
    // Unallocated (the common case in sparse images): everything else below handles it too, slower.
    if (hiWord === 0 && loWord === 0 && (!extendedL2 || words[w + 3] === 0)) {
      startZero(sector);
      continue;
    }
    if (hiWord & 0x40000000) {
      const guestOffset = sector * 512;
      flushZero(sector);
      flushData();
      const { hostOffset, compressedLength } = compressedDescriptor(table, index * header.l2EntryBytes, header);
      if (hostOffset === 0) throw badInput(`qcow2 compressed cluster at host offset 0 ${entryAt(l2Offset, index)}: the image is corrupt`);
      pieces.push({ kind: 'compressed', guestOffset, length: Math.min(clusterSize, virtualSize - guestOffset), hostOffset, compressedLength });
      continue;
    }

    // Bits 9..55: the host offset in sectors; its bits below the cluster size must be clear.
    const hostSector = (hiWord & 0x00ffffff) * 0x800000 + (loWord >>> 9);
    if (hostSector !== 0 && (loWord & (clusterSize - 1)) >>> 9 !== 0) {
      throw badInput(
        `qcow2 cluster offset ${hex(offsetOfWords(hiWord, loWord))} is not aligned to the ${clusterSize}-byte clusters ${entryAt(l2Offset, index)}: the image is corrupt`,
      );
    }

    if (!extendedL2) {
      const zeroFlag = (loWord & 1) !== 0;
      if (zeroFlag && version < 3) throw badInput(`qcow2 version 2 image has a zero-cluster entry ${entryAt(l2Offset, index)}: the image is corrupt`);
      if (zeroFlag || hostSector === 0) startZero(sector);
      else addData(sector, sectorsPerCluster, hostSector);
      continue;
    }

    // Extended L2: bit x of the low word = subcluster x allocated, of the high word = reads as zeros.
    const zeroBits = words[w + 2]!;
    const allocBits = words[w + 3]!;
    if (hostSector === 0) {
      if (allocBits !== 0) throw badInput(`qcow2 unallocated cluster has allocated subclusters ${entryAt(l2Offset, index)}: the image is corrupt`);
      startZero(sector);
      continue;
    }
    if ((zeroBits & allocBits) !== 0) {
      throw badInput(`qcow2 subclusters are marked both allocated and zero ${entryAt(l2Offset, index)}: the image is corrupt`);
    }
    const subSectors = header.subclusterSize / 512;
    let sc = 0;
    while (sc < 32) {
      const start = sector + sc * subSectors;
      if (start * 512 >= virtualSize) break;
      const isData = ((allocBits >>> sc) & 1) === 1 && ((zeroBits >>> sc) & 1) === 0;
      let end = sc + 1;
      while (end < 32 && (((allocBits >>> end) & 1) === 1 && ((zeroBits >>> end) & 1) === 0) === isData) end++;
      if (isData) addData(start, (end - sc) * subSectors, hostSector + sc * subSectors);
      else startZero(start);
      sc = end;
    }
  }
  flushData();
  flushZero(Math.min(firstSector + entries * sectorsPerCluster, virtualSize / 512));
  return pieces;
}

const entryAt = (l2Offset: number, index: number) => `(L2 table at ${hex(l2Offset)}, entry ${index})`;

/**
 * The first `count` big-endian 32-bit words of `bytes`, in host order (a copy; `bytes` is left as
 * is). Signed: an L2 entry's high word has bit 31 set (QCOW_OFLAG_COPIED), and as an unsigned
 * number it would be a heap allocation at each read; the code reading them uses bit operations.
 */
function hostOrderWords(bytes: Buffer, count: number): Int32Array {
  const words = new Int32Array(count);
  const view = Buffer.from(words.buffer, 0, count * 4);
  bytes.copy(view, 0, 0, count * 4);
  if (os.endianness() === 'LE') view.swap32();
  return words;
}

/** qcow2_parse_compressed_l2_entry: offset in the low bits, extra 512-byte sectors above. */
function compressedDescriptor(table: Buffer, at: number, header: Qcow2Header): { hostOffset: number; compressedLength: number } {
  const entry = table.readBigUInt64BE(at) & ((1n << 62n) - 1n);
  const csizeShift = BigInt(62 - (header.clusterBits - 8));
  const csizeMask = (1n << BigInt(header.clusterBits - 8)) - 1n;
  const hostOffset = Number(entry & ((1n << csizeShift) - 1n));
  if (!Number.isSafeInteger(hostOffset)) throw badInput('qcow2 compressed cluster has an impossible host offset: the image is corrupt');
  const sectors = Number((entry >> csizeShift) & csizeMask) + 1;
  return { hostOffset, compressedLength: sectors * 512 - (hostOffset % 512) };
}

/**
 * Host clusters an L2 table points to but does not read in full: zero-flagged preallocated
 * clusters and partly allocated subclusters. Their other bytes are stale, never anything else,
 * so the one-pass driver need not keep them.
 */
export function partlyReadHostClusters(table: Buffer, header: Qcow2Header): number[] {
  const offsets: number[] = [];
  for (let index = 0; index < header.l2Entries; index++) {
    const at = index * header.l2EntryBytes;
    if (table.readUInt32BE(at) & 0x40000000) continue; // compressed: byte ranges, not clusters
    const offset = offsetBits(table, at);
    if (offset === 0 || offset % header.clusterSize !== 0) continue;
    const partly = header.extendedL2
      ? (table.readUInt32BE(at + 12) & ~table.readUInt32BE(at + 8)) >>> 0 !== 0xffffffff
      : (table.readUInt32BE(at + 4) & 1) === 1;
    if (partly) offsets.push(offset);
  }
  return offsets;
}
