import type { ByteRange, DataMap } from './source.js';
import { fstat as fstatCallback } from 'node:fs';
import { promisify } from 'node:util';
import { fsExt, lseek, SEEK_DATA, SEEK_HOLE } from '../util/fs-ext.js';
import { sourceEndedEarly } from '../util/file-copy.js';

const fstat = promisify(fstatCallback);

/**
 * Where a local file holds data and where it has holes (SEEK_DATA / SEEK_HOLE, as qemu and
 * `cp --sparse` ask). A hole reads as zeros, so a reader can skip it. File systems without
 * hole tracking report the whole file as data.
 */
export class FileDataMap implements DataMap {
  /**
   * The last answer: a hole [from, start), then data [start, end) (start = end = size: no more
   * data). Runs of clusters ask about neighbouring offsets: most questions need no system call.
   */
  private known = { from: 0, start: 0, end: 0 };

  private constructor(
    private readonly fd: number,
    private readonly size: number,
    /** What a file that shrank becomes (the caller's words for it, with the path). */
    private readonly failure: (err: unknown) => Error,
  ) {}

  /**
   * A map of the open regular file `fd`, or undefined when lseek's SEEK_DATA is not available
   * (fs-ext did not build): sparse files are then read in full, with the same output.
   */
  static of(fd: number, size: number, failure: (err: unknown) => Error = (err) => err as Error): FileDataMap | undefined {
    // Node's fs has no lseek, so no SEEK_DATA: fs-ext has.
    return fsExt() ? new FileDataMap(fd, size, failure) : undefined;
  }

  async nextData(offset: number): Promise<ByteRange | undefined> {
    if (offset >= this.size) return undefined;
    if (!(offset >= this.known.from && offset < this.known.end)) this.known = await this.find(offset);
    const { start, end } = this.known;
    return start === end ? undefined : { start: Math.max(start, offset), end };
  }

  private async find(offset: number): Promise<{ from: number; start: number; end: number }> {
    let start: number;
    try {
      start = Math.min((await lseek(this.fd, offset, SEEK_DATA)) ?? this.size, this.size);
    } catch {
      // An lseek that fails otherwise (a file system that refuses the question): all data, read it.
      return { from: offset, start: offset, end: this.size };
    }
    if (start === this.size) {
      // "No data after offset" is also what a file that shrank below it answers: that file's tail
      // would come out as zeros, a disk that is neither the file as it was nor as it is.
      if ((await fstat(this.fd)).size < this.size) throw this.failure(sourceEndedEarly());
      return { from: offset, start, end: start };
    }
    try {
      // Every file has a hole at its end (SEEK_HOLE's "virtual hole"): this always answers.
      const end = Math.min((await lseek(this.fd, start, SEEK_HOLE)) ?? this.size, this.size);
      return { from: offset, start, end };
    } catch {
      // An lseek that fails otherwise (a file system that refuses the question): all data, read it.
      return { from: offset, start: offset, end: this.size };
    }
  }

  async dataIn(start: number, end: number): Promise<ByteRange[]> {
    const ranges: ByteRange[] = [];
    for (let at = start; at < end; ) {
      const data = await this.nextData(at);
      if (!data || data.start >= end) break;
      ranges.push({ start: data.start, end: Math.min(data.end, end) });
      at = data.end;
    }
    return ranges;
  }
}
