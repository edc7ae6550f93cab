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

/**
 * Neighbouring extents gathered into one: data extents that continue each other on the disk and in
 * one buffer (clusters cut from one decoded chunk), or zero extents that touch. The merged extent
 * is made once, when taken: its data a view over all the parts (nothing is copied), its release()
 * releasing every part. Used by pipeline/coalesce-extents.ts and the one-pass qcow2 driver.
 */
export class ExtentRun {
  private first: Extent | undefined;
  private length = 0;
  private releases: (() => void)[] = [];

  /** Adds `extent` if the run is empty or it continues the run; false (nothing added) otherwise. */
  add(extent: Extent): boolean {
    const first = this.first;
    if (first) {
      if (first.offset + this.length !== extent.offset || extent.inFile) return false;
      if (!first.data || !extent.data) {
        if (first.data || extent.data) return false;
      } else if (
        first.data.buffer !== extent.data.buffer ||
        first.data.byteOffset + this.length !== extent.data.byteOffset ||
        this.length + extent.length > MAX_MERGED_BYTES
      ) {
        return false;
      }
    } else if (extent.inFile) {
      return false;
    }
    this.first ??= extent;
    this.length += extent.length;
    if (extent.release) this.releases.push(extent.release);
    return true;
  }

  /** The merged extent, if any, leaving the run empty. */
  take(): Extent | undefined {
    const first = this.first;
    if (!first) return undefined;
    const { length, releases } = this;
    this.first = undefined;
    this.length = 0;
    this.releases = [];
    if (releases.length === 1 && length === first.length) return first;
    const release = releases.length === 0 ? undefined : () => releases.forEach((part) => part());
    if (!first.data) return { offset: first.offset, length, release };
    const data = length === first.length ? first.data : Buffer.from(first.data.buffer, first.data.byteOffset, length);
    return { offset: first.offset, length, data, release };
  }
}
