import { Readable } from 'node:stream';
import { open, type FileHandle } from 'node:fs/promises';
import { chunkPool } from '../util/buffer-pool.js';

/**
 * A file read from the start in 1 MiB chunks taken from chunkPool. Consumers that are done with a
 * chunk give it back (raw images once written, the xz decoder once decoded), so a long import
 * reuses a few dozen buffers instead of page-faulting a fresh one per MiB.
 */
export class PooledFileStream extends Readable {
  private handle: FileHandle | undefined;

  constructor(
    private readonly path: string,
    signal?: AbortSignal,
    /** What an open or read failure becomes (the caller's words for it, with the path). */
    private readonly failure: (err: unknown) => Error = (err) => err as Error,
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
    const buffer = chunkPool.take();
    // From the current offset, not a position: pipes and character devices (`<(…)`, /dev/stdin) cannot seek.
    this.handle!.read(buffer, 0, buffer.length, null).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) {
          chunkPool.give(buffer);
          this.push(null);
          return;
        }
        this.push(buffer.subarray(0, bytesRead));
      },
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
