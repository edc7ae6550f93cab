/**
 * The seam between formats and targets (DESIGN.md): a disk reader yields extents of the guest disk.
 * An extent without `data` or `inFile` reads as zeros. Extents never overlap; they may arrive in any order
 * (the one-pass qcow2 driver places clusters as their mappings become known). Once yielded, `data`
 * belongs to the consumer: the reader must not modify or reuse it (writes of several extents are in
 * flight at once).
 */
export interface Extent {
  offset: number;
  length: number;
  data?: Buffer;
  /** Called by the consumer once `data` is written and no longer needed (lets a reader recycle it). */
  release?: () => void;
  /**
   * Instead of `data`: the bytes are [position, position + length) of a local file, still unread.
   * A target that copies between files does (DiskTarget.copyFrom); any other consumer reads them.
   * Readers yield these only when asked to (see RandomAccessReader.localFile).
   */
  inFile?: { file: LocalFile; position: number };
}

/** A local source file open for reading, for copies that keep its bytes out of JavaScript. */
export interface LocalFile {
  readonly fd: number;
  /** Reads as the source's reader reads (pooled buffers, failures in words); shorter at the file's end. */
  read(position: number, length: number): Promise<Buffer>;
  /** What to report when reading it fails (names the file, says what to do). */
  readFailure(err: unknown): Error;
}

export type ExtentStream = AsyncIterable<Extent>;

/**
 * A disk image ready to be written: its virtual size when known before the data
 * (qcow2 header, raw file size) and its extents.
 */
export interface DiskImage {
  /** Format name shown to users: 'raw', 'iso', 'qcow2'. */
  format: string;
  /** Guest-visible size; undefined for raw streams whose length is only known at the end. */
  virtualSize?: number;
  extents(): ExtentStream;
  /** Scratch bytes the reader used (one-pass qcow2 spill), known after extents() is drained. */
  scratchBytesUsed?(): number;
}

/** Merged data extents stay at or below this: a few writes in flight keep memory small. */
const MAX_MERGED_BYTES = 4 << 20;

/** Whether `b` continues `a` on the disk and, for data, in the same buffer (pipeline/coalesce-extents.ts merges by this rule). */
export function canMergeExtents(a: Extent, b: Extent): boolean {
  if (a.offset + a.length !== b.offset) return false;
  if (a.inFile || b.inFile) return false;
  if (!a.data || !b.data) return !a.data && !b.data;
  return (
    a.data.buffer === b.data.buffer &&
    a.data.byteOffset + a.data.length === b.data.byteOffset &&
    a.length + b.length <= MAX_MERGED_BYTES
  );
}

/** `a` and `b` (canMergeExtents) as one extent, without copying; its release() releases both. */
export function mergeExtents(a: Extent, b: Extent): Extent {
  const length = a.length + b.length;
  const release = a.release && b.release ? () => (a.release!(), b.release!()) : (a.release ?? b.release);
  if (!a.data) return { offset: a.offset, length, release };
  return { offset: a.offset, length, data: Buffer.from(a.data.buffer, a.data.byteOffset, length), release };
}
