/**
 * Recycled 1 MiB buffers for the hot path of sequential imports. A fresh large Buffer costs page
 * faults on first touch and garbage-collector pressure; a decoder that takes its output buffers
 * from here and a writer that gives them back once written avoid both. Only buffers that came
 * from the pool go back into it, and only whole ones.
 */
export class BufferPool {
  /** Free buffers by size. */
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;
  private readonly owned = new WeakSet<ArrayBufferLike>();

  constructor(
    /** The size take() gives when asked for none. */
    readonly size: number,
    /** At most this many buffers of `size`, in bytes, are kept free. */
    private readonly maxFree: number,
  ) {}

  /** A buffer of `size` bytes (the pool's own size unless asked for another, e.g. a decoder's larger chunks). */
  take(size = this.size): Buffer {
    const reused = this.free.get(size)?.pop();
    if (reused) this.freeBytes -= size;
    const buffer = reused ?? Buffer.allocUnsafeSlow(size);
    this.owned.add(buffer.buffer);
    return buffer;
  }

  /** Whether `data` is (a view of) a buffer this pool handed out and has not got back. */
  owns(data: Buffer): boolean {
    return this.owned.has(data.buffer);
  }

  /** Returns a buffer (or a view of one) taken from this pool; anything else is ignored. */
  give(data: Buffer): void {
    const size = data.buffer.byteLength;
    if (!this.owned.has(data.buffer) || this.freeBytes + size > this.maxFree * this.size) return;
    this.owned.delete(data.buffer);
    let free = this.free.get(size);
    if (!free) this.free.set(size, (free = []));
    free.push(Buffer.from(data.buffer, 0, size));
    this.freeBytes += size;
  }
}

/**
 * Shared use of pooled buffers: several holders (clusters cut from one chunk, writes in flight)
 * each hold a view; the buffer goes back to its pool when the last one lets go. Views of other
 * buffers are ignored, so holders need not know where their bytes came from.
 */
export class PoolLeases {
  private readonly counts = new Map<ArrayBufferLike, number>();

  constructor(private readonly pool: BufferPool) {}

  hold(view: Buffer): void {
    if (!this.pool.owns(view)) return;
    this.counts.set(view.buffer, (this.counts.get(view.buffer) ?? 0) + 1);
  }

  release(view: Buffer): void {
    const count = this.counts.get(view.buffer);
    if (count === undefined) return;
    if (count > 1) this.counts.set(view.buffer, count - 1);
    else {
      this.counts.delete(view.buffer);
      this.pool.give(view);
    }
  }
}

/** The pool for 1 MiB stream chunks (and decoders' DECODED_CHUNK ones); 48 MiB of free buffers at most, enough for the parallel xz decoder's queues. */
export const chunkPool = new BufferPool(1 << 20, 48);

/**
 * The chunks the xz and zstd decoders hand out (from chunkPool): each chunk is a trip through the
 * streams, the disk reader and the writer on the main thread, where zstd also decodes (zstd-napi
 * has no asynchronous call), and for xz a pool job of liblzma's. qcow2.xz benchmark, medians of 9:
 * 1 MiB 2.41 s, 2 MiB 2.33 s; raw.zst 1 GiB to tmpfs, medians of 7: 0.79 -> 0.76 s.
 */
export const DECODED_CHUNK = 2 << 20;

/** The pool for large random-access reads (1–4 MiB, e.g. runs of qcow2 clusters); 8 free at most. */
export const readPool = new BufferPool(4 << 20, 8);
