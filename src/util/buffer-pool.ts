/**
 * Recycled 1 MiB buffers for the hot path of sequential imports. A fresh large Buffer costs page
 * faults on first touch and garbage-collector pressure; a decoder that takes its output buffers
 * from here and a writer that gives them back once written avoid both. Only buffers that came
 * from the pool go back into it, and only whole ones.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly owned = new WeakSet<ArrayBufferLike>();

  constructor(
    readonly size: number,
    private readonly maxFree: number,
  ) {}

  take(): Buffer {
    const buffer = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
    this.owned.add(buffer.buffer);
    return buffer;
  }

  /** Returns a buffer (or a view of one) taken from this pool; anything else is ignored. */
  give(data: Buffer): void {
    if (!this.owned.has(data.buffer) || this.free.length >= this.maxFree) return;
    this.owned.delete(data.buffer);
    this.free.push(Buffer.from(data.buffer, 0, this.size));
  }
}

/** The pool for 1 MiB stream chunks; 16 free buffers at most (16 MiB). */
export const chunkPool = new BufferPool(1 << 20, 16);

/** The pool for large random-access reads (1–4 MiB, e.g. runs of qcow2 clusters); 8 free at most. */
export const readPool = new BufferPool(4 << 20, 8);
