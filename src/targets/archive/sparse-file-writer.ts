/**
 * Writes a regular file that is being extracted, leaving holes: data arrives at increasing
 * offsets (contiguous for a plain file, segment by segment for a tar sparse file), is gathered
 * into 1 MiB runs, and every 4 KiB block that is all zeros is skipped rather than written (the
 * same granularity as qemu-img's default `-S 4k`). The file is fresh, so skipped blocks read
 * back as zeros; `finish` sets the final size.
 *
 * Synchronous calls on a file descriptor, like the rest of the extraction's file system steps:
 * entries are extracted one at a time, and a thread-pool round trip per call (open, write,
 * truncate, chmod, utimes, close) cost more than the calls themselves for small files (50 000
 * empty files: 32 s, most of it waiting; GNU tar 4–7 s).
 */
import { ftruncateSync, writeSync } from 'node:fs';
import { chunkPool } from '../../util/buffer-pool.js';
import { dataRuns } from '../zero-runs.js';

/** The file system block a write allocates at least: a byte of data takes a whole one. */
const ALLOCATION_BLOCK = 4096;

export class SparseFileWriter {
  /** The run being gathered, taken from the pool at the first byte: most files in a tar are small or empty. */
  private run?: Buffer;
  private runLength = 0;
  /** File offset of run[0]. */
  private runStart = 0;
  /** Data bytes actually written (zero blocks skipped). */
  bytesWritten = 0;
  /** Where the furthest write ended: the file's length until finish() sets it. */
  private end = 0;
  /** 4 KiB blocks written to so far (writes come at increasing offsets), and the last of them. */
  private blocks = 0;
  private lastBlock = -1;

  /**
   * `onAllocate` hears the disk space the file's data takes so far, in whole 4 KiB blocks, after
   * each write: a sparse file's map can put single bytes 4 KiB apart, a 4 096-fold amplification
   * of the bytes the archive stores.
   */
  constructor(
    private readonly fd: number,
    private readonly onAllocate?: (bytes: number) => void,
  ) {}

  writeAt(offset: number, data: Buffer): void {
    if (this.runLength > 0 && offset !== this.runStart + this.runLength) this.flush();
    if (this.runLength === 0) this.runStart = offset;
    const run = (this.run ??= chunkPool.take());
    let from = 0;
    while (from < data.length) {
      const n = Math.min(run.length - this.runLength, data.length - from);
      data.copy(run, this.runLength, from, from + n);
      this.runLength += n;
      from += n;
      if (this.runLength === run.length) this.flush();
    }
  }

  /** Writes what is gathered, then makes the file exactly `size` bytes (holes past the data). */
  finish(size: number): void {
    this.flush();
    // The file is fresh: its length is where the last write ended (an empty file's: 0).
    if (size !== this.end) ftruncateSync(this.fd, size);
    this.release();
  }

  /** Gives the run buffer back (finish does; a failed extraction calls it too). */
  release(): void {
    if (this.run) chunkPool.give(this.run);
    this.run = undefined;
  }

  private flush(): void {
    if (!this.run) return;
    const run = this.run.subarray(0, this.runLength);
    const start = this.runStart;
    this.runStart += this.runLength;
    this.runLength = 0;
    for (const { start: from, end: to } of dataRuns(run, start)) this.writeFully(run.subarray(from, to), start + from);
  }

  private writeFully(data: Buffer, position: number): void {
    let done = 0;
    while (done < data.length) done += writeSync(this.fd, data, done, data.length - done, position + done);
    this.bytesWritten += data.length;
    this.end = Math.max(this.end, position + data.length);
    if (data.length === 0) return;
    const first = Math.max(Math.floor(position / ALLOCATION_BLOCK), this.lastBlock + 1);
    const last = Math.floor((position + data.length - 1) / ALLOCATION_BLOCK);
    if (last < first) return;
    this.blocks += last - first + 1;
    this.lastBlock = last;
    this.onAllocate?.(this.blocks * ALLOCATION_BLOCK);
  }
}
