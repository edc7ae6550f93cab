import { createHash, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { ChecksumSpec, ProgressReport } from '../request.js';
import { ChecksumMismatchError } from '../errors.js';

/**
 * Watches the source bytes as they pass, before any decompression: counts them for progress
 * and hashes them for the checksum (SPEC §5.1). Adds no copies.
 */
export class SourceTap extends Transform {
  bytes = 0;
  private readonly hash?: Hash;
  private lastReport = 0;

  constructor(
    private readonly checksum: ChecksumSpec | undefined,
    private readonly total: number | undefined,
    private readonly progress?: (report: ProgressReport) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
    if (checksum) this.hash = createHash(checksum.algorithm);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    const now = Date.now();
    if (this.progress && now - this.lastReport >= 200) {
      this.lastReport = now;
      this.progress({ bytes: this.bytes, total: this.total });
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.progress?.({ bytes: this.bytes, total: this.total });
    callback();
  }

  /** Throws ChecksumMismatchError unless the bytes seen hash to the expected value. */
  verify(): string | undefined {
    if (!this.checksum || !this.hash) return undefined;
    const calculated = this.hash.digest('hex');
    if (calculated !== this.checksum.hex.toLowerCase()) {
      throw new ChecksumMismatchError(this.checksum.algorithm, this.checksum.hex.toLowerCase(), calculated);
    }
    return `${this.checksum.algorithm}:${calculated}`;
  }

  static attach(source: Readable, tap: SourceTap): Readable {
    source.on('error', (err) => tap.destroy(err));
    tap.once('close', () => {
      if (!source.destroyed) source.destroy();
    });
    return source.pipe(tap);
  }
}
