import { Readable } from 'node:stream';
import { open, type FileHandle } from 'node:fs/promises';
import { chunkPool } from '../util/buffer-pool.js';
import { sourceEndedEarly } from '../util/file-copy.js';

/**
 * A file read from the start in 1 MiB chunks taken from chunkPool. Consumers that are done with a
 * chunk give it back (raw images once written, the xz decoder once decoded), so a long import
 * reuses a few dozen buffers instead of page-faulting a fresh one per MiB.
 */
export class PooledFileStream extends Readable {
  private handle: FileHandle | undefined;
  private position = 0;

  constructor(
    private readonly path: string,
    signal?: AbortSignal,
    /** What an open or read failure becomes (the caller's words for it, with the path). */
    private readonly failure: (err: unknown) => Error = (err) => err as Error,
    /**
     * The size the file had when it was looked at: the stream ends there, and fails if the file
     * ends first (it shrank: its tail would otherwise come out as zeros, a disk that is neither
     * the file as it was nor as it is). Undefined for pipes and devices, read to their end.
     */
    private readonly size?: number,
  ) {
    super({ highWaterMark: chunkPool.size, signal });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    open(this.path, 'r').then((handle) => {
      this.handle = handle;
      callback();
    }, (err: unknown) => callback(this.failure(err)));
  }

  override _read(): void {
    const wanted = this.size === undefined ? chunkPool.size : Math.min(chunkPool.size, this.size - this.position);
    if (wanted === 0) {
      this.push(null);
      return;
    }
    const buffer = chunkPool.take();
    // From the current offset, not a position: pipes and character devices (`<(…)`, /dev/stdin) cannot seek.
    this.handle!.read(buffer, 0, wanted, null).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) {
          chunkPool.give(buffer);
          if (this.size === undefined || this.position >= this.size) this.push(null);
          else this.endedShort();
          return;
        }
        this.position += bytesRead;
        this.push(buffer.subarray(0, bytesRead));
      },
      (err: unknown) => this.destroy(this.failure(err)),
    );
  }

  /**
   * The file ended before its size: it shrank (an error), or it is one that says a larger size than
   * it holds (a sysfs file says 4096), which is read as it is, as qemu-img reads it.
   */
  private endedShort(): void {
    this.handle!.stat().then(
      (info) => (info.size < this.size! ? this.destroy(this.failure(sourceEndedEarly())) : this.push(null)),
      (err: unknown) => this.destroy(this.failure(err)),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const handle = this.handle;
    this.handle = undefined;
    if (!handle) return callback(error);
    handle.close().then(() => callback(error), () => callback(error));
  }
}
