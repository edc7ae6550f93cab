/**
 * Writes a regular file that is being extracted, leaving holes: data arrives at increasing
 * offsets (contiguous for a plain file, segment by segment for a tar sparse file), is gathered
 * into 1 MiB runs, and every 4 KiB block that is all zeros is skipped rather than written (the
 * same granularity as qemu-img's default `-S 4k`). The file is fresh, so skipped blocks read
 * back as zeros; `finish` sets the final size.
 */
import type { FileHandle } from 'node:fs/promises';

const RUN = 1 << 20;
const ZERO_BLOCK_SIZE = 4096;
const ZERO_BLOCK = Buffer.alloc(ZERO_BLOCK_SIZE);

export class SparseFileWriter {
  private readonly run = Buffer.allocUnsafe(RUN);
  private runLength = 0;
  /** File offset of run[0]. */
  private runStart = 0;
  /** Data bytes actually written (zero blocks skipped). */
  bytesWritten = 0;

  constructor(private readonly file: FileHandle) {}

  async writeAt(offset: number, data: Buffer): Promise<void> {
    if (this.runLength > 0 && offset !== this.runStart + this.runLength) await this.flush();
    if (this.runLength === 0) this.runStart = offset;
    let from = 0;
    while (from < data.length) {
      const n = Math.min(RUN - this.runLength, data.length - from);
      data.copy(this.run, this.runLength, from, from + n);
      this.runLength += n;
      from += n;
      if (this.runLength === RUN) await this.flush();
    }
  }

  /** Writes what is gathered, then makes the file exactly `size` bytes (holes past the data). */
  async finish(size: number): Promise<void> {
    await this.flush();
    await this.file.truncate(size);
  }

  private async flush(): Promise<void> {
    const run = this.run.subarray(0, this.runLength);
    const start = this.runStart;
    this.runStart += this.runLength;
    this.runLength = 0;
    let dataFrom = -1; // start of the pending non-zero stretch in `run`
    for (let at = 0; at < run.length; at += ZERO_BLOCK_SIZE) {
      const block = run.subarray(at, at + ZERO_BLOCK_SIZE);
      const zero = block.length === ZERO_BLOCK_SIZE && block.equals(ZERO_BLOCK);
      if (!zero && dataFrom < 0) dataFrom = at;
      if (zero && dataFrom >= 0) {
        await this.writeFully(run.subarray(dataFrom, at), start + dataFrom);
        dataFrom = -1;
      }
    }
    if (dataFrom >= 0) await this.writeFully(run.subarray(dataFrom), start + dataFrom);
  }

  private async writeFully(data: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.file.write(data, done, data.length - done, position + done);
      done += bytesWritten;
    }
    this.bytesWritten += data.length;
  }
}
