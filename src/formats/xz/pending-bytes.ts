/** Received bytes not yet used, as the chunks they arrived in: slices are taken without copying where possible. */
export class PendingBytes {
  private readonly chunks: Buffer[] = [];
  private offset = 0;
  length = 0;

  /** `used` hears of each chunk once all of its bytes have been taken. */
  constructor(private readonly used?: (chunk: Buffer) => void) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The byte at `index` from the front; the caller checks `length` first. */
  at(index: number): number {
    let i = this.offset + index;
    for (const chunk of this.chunks) {
      if (i < chunk.length) return chunk[i]!;
      i -= chunk.length;
    }
    throw new RangeError('PendingBytes.at past the end');
  }

  /** Exactly `count` bytes (the caller checks `length` first); copied only when they span chunks. */
  take(count: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length - this.offset >= count) return this.takeFromFirst(count);
    const out = Buffer.allocUnsafe(count);
    let filled = 0;
    while (filled < count) filled += this.takeFromFirst(count - filled).copy(out, filled);
    return out;
  }

  /** Drops leading zero bytes (stream padding); returns how many. */
  skipZeros(): number {
    let skipped = 0;
    while (this.chunks.length > 0) {
      const first = this.chunks[0]!;
      let at = this.offset;
      while (at < first.length && first[at] === 0) at++;
      const zeros = at - this.offset;
      if (zeros > 0) this.takeFromFirst(zeros);
      skipped += zeros;
      if (at < first.length) break;
    }
    return skipped;
  }

  /** Up to `limit` bytes from the first chunk, without copying. */
  takeSome(limit: number): Buffer {
    const first = this.chunks[0]!;
    return this.takeFromFirst(Math.min(limit, first.length - this.offset));
  }

  private takeFromFirst(count: number): Buffer {
    const first = this.chunks[0]!;
    const part = first.subarray(this.offset, this.offset + Math.min(count, first.length - this.offset));
    this.offset += part.length;
    this.length -= part.length;
    if (this.offset === first.length) {
      this.chunks.shift();
      this.offset = 0;
      this.used?.(first);
    }
    return part;
  }
}
