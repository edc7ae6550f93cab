/**
 * Random access over a "fetch this byte range" function with a small block cache and
 * read-ahead, so that a qcow2 reader's many small metadata reads and cluster-by-cluster
 * data reads become few, larger requests. Memory stays bounded by `maxCachedBlocks`.
 */
import { badInput } from '../../errors.js';
import type { RandomAccessReader } from '../source.js';
import { readPool } from '../../util/buffer-pool.js';

/**
 * Fetches `length` bytes at `start`. With `into` (at least `length` bytes) the bytes are read
 * into it and a view of it is returned; `into` is the caller's again once the promise settles.
 */
export type RangeFetcher = (start: number, length: number, into?: Buffer) => Promise<Buffer>;

export interface BlockCacheOptions {
  blockSize: number;
  maxCachedBlocks: number;
  /** Upper bound of read-ahead for sequential reads, in blocks. */
  maxReadAheadBlocks: number;
}

export const defaultBlockCacheOptions: BlockCacheOptions = {
  // A qcow2 cluster (64 KiB by default): an L2 table or a cluster is one block.
  blockSize: 64 << 10,
  maxCachedBlocks: 256,
  maxReadAheadBlocks: 64,
};

/** Reads at least this large bypass the block cache. */
const DIRECT_READ_BYTES = 1 << 20;

export class BlockCacheReader implements RandomAccessReader {
  /** Each read waits a round trip: runs of data are asked for 4 MiB (a read-pool buffer) at a time (see qcow2/random-access.ts). */
  readonly preferredReadBytes = readPool.size;
  /** Insertion order is recency order: a hit moves a block to the end. */
  private readonly blocks = new Map<number, Promise<Buffer>>();
  private lastReadEnd = -1;
  private readAheadBlocks = 0;
  private closed = false;

  constructor(
    readonly size: number,
    private readonly fetchRange: RangeFetcher,
    private readonly options: BlockCacheOptions = defaultBlockCacheOptions,
    private readonly onClose: () => Promise<void> = async () => {},
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw badInput(`invalid read of ${length} bytes at offset ${offset}`);
    }
    if (this.closed) throw new Error('read after close');
    const end = Math.min(this.size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const { blockSize } = this.options;
    const first = Math.floor(offset / blockSize);
    const last = Math.floor((end - 1) / blockSize);
    // A large read (a run of data clusters) is data read once: one Range request for exactly
    // those bytes, with no blocks to cache, evict or join. Its callers keep several in flight.
    // The bytes go into a recycled buffer, which the caller may give back to readPool once done.
    if (end - offset >= DIRECT_READ_BYTES && !this.anyCached(first, last)) {
      this.lastReadEnd = end;
      this.readAheadBlocks = 0;
      const into = end - offset <= readPool.size ? readPool.take().subarray(0, end - offset) : undefined;
      let data: Buffer;
      try {
        data = await this.fetchRange(offset, end - offset, into);
        if (data.length !== end - offset) throw new Error(`range read at ${offset} returned ${data.length} of ${end - offset} bytes`);
      } catch (err) {
        if (into) readPool.give(into);
        throw err;
      }
      return data;
    }
    // Sequential reads grow the read-ahead (at least twice the read); a jump resets it.
    const sequential = offset === this.lastReadEnd;
    this.readAheadBlocks = sequential
      ? Math.min(this.options.maxReadAheadBlocks, Math.max(2 * (last - first + 1), this.readAheadBlocks * 2))
      : 0;
    this.lastReadEnd = end;
    const lastBlock = Math.floor((this.size - 1) / blockSize);
    // Read ahead only on a miss: reads inside cached blocks cost nothing and fetch nothing.
    let missing = false;
    for (let index = first; index <= last && !missing; index++) missing = !this.blocks.has(index);
    if (missing) {
      // Two requests, so this read is answered as soon as its own bytes arrive while the
      // read-ahead is still on its way.
      this.fetchMissing(first, last);
      if (this.readAheadBlocks > 0 && last < lastBlock) this.fetchMissing(last + 1, Math.min(lastBlock, last + this.readAheadBlocks));
    }
    const parts: Promise<Buffer>[] = [];
    for (let index = first; index <= last; index++) parts.push(this.touch(index));
    // While the caller works on this read, the next window is already on its way (once half
    // of it is missing, so that requests stay large). Small (metadata) reads do not trigger it.
    if (sequential && end - offset >= blockSize && this.readAheadBlocks > 0 && last < lastBlock) {
      const to = Math.min(lastBlock, last + this.readAheadBlocks);
      let firstMissing = -1;
      let missingAhead = 0;
      for (let index = last + 1; index <= to; index++) {
        if (this.blocks.has(index)) continue;
        missingAhead++;
        if (firstMissing < 0) firstMissing = index;
      }
      if (missingAhead > 0 && (missingAhead * 2 >= this.readAheadBlocks || to === lastBlock)) {
        this.fetchMissing(firstMissing, Math.min(lastBlock, firstMissing + this.readAheadBlocks - 1));
      }
    }
    // Blocks a large read covers whole are streamed data, read once: dropping them keeps the
    // cache for read-ahead and metadata (plain LRU would evict read-ahead blocks first).
    if (end - offset >= blockSize) {
      for (let index = Math.ceil(offset / blockSize); (index + 1) * blockSize <= end; index++) this.blocks.delete(index);
    }
    this.evictOldest();
    const buffers = await Promise.all(parts);
    const start = offset - first * blockSize;
    return joinBlocks(buffers).subarray(start, start + (end - offset));
  }

  /** Stores bytes already at hand (e.g. from a probe) as the block starting at `index`; must be the whole block. */
  prime(index: number, data: Buffer): void {
    const expected = Math.min(this.options.blockSize, this.size - index * this.options.blockSize);
    if (expected > 0 && data.length === expected) this.blocks.set(index, Promise.resolve(data));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.blocks.clear();
    await this.onClose();
  }

  private touch(index: number): Promise<Buffer> {
    const block = this.blocks.get(index)!;
    this.blocks.delete(index);
    this.blocks.set(index, block);
    return block;
  }

  private anyCached(first: number, last: number): boolean {
    for (let index = first; index <= last; index++) if (this.blocks.has(index)) return true;
    return false;
  }

  /** One request per run of consecutive missing blocks. */
  private fetchMissing(first: number, last: number): void {
    let runStart = -1;
    for (let index = first; index <= last + 1; index++) {
      const missing = index <= last && !this.blocks.has(index);
      if (missing && runStart < 0) runStart = index;
      if (!missing && runStart >= 0) {
        this.fetchRun(runStart, index - 1);
        runStart = -1;
      }
    }
  }

  private evictOldest(): void {
    while (this.blocks.size > this.options.maxCachedBlocks) this.blocks.delete(this.blocks.keys().next().value!);
  }

  private fetchRun(first: number, last: number): void {
    const { blockSize } = this.options;
    const start = first * blockSize;
    const length = Math.min(this.size, (last + 1) * blockSize) - start;
    const run = this.fetchRange(start, length).then((data) => {
      if (data.length !== length) throw new Error(`range read at ${start} returned ${data.length} of ${length} bytes`);
      return data;
    });
    for (let index = first; index <= last; index++) {
      const block = run.then((data) => data.subarray((index - first) * blockSize, (index - first + 1) * blockSize));
      // A failed fetch is forgotten, so a later read tries again; the error reaches the reader that awaits it.
      block.catch(() => {
        if (this.blocks.get(index) === block) this.blocks.delete(index);
      });
      this.blocks.set(index, block);
    }
  }
}

/** Blocks of one fetch lie side by side in one buffer: join them as a view instead of a copy. */
function joinBlocks(buffers: Buffer[]): Buffer {
  if (buffers.length === 1) return buffers[0]!;
  const head = buffers[0]!;
  let total = head.length;
  let contiguous = true;
  for (let i = 1; i < buffers.length; i++) {
    const previous = buffers[i - 1]!;
    const current = buffers[i]!;
    contiguous &&= current.buffer === head.buffer && current.byteOffset === previous.byteOffset + previous.length;
    total += current.length;
  }
  return contiguous ? Buffer.from(head.buffer, head.byteOffset, total) : Buffer.concat(buffers, total);
}
