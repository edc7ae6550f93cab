import type { Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { ChecksumSpec, ProgressReport } from '../request.js';
import { ChecksumMismatchError } from '../errors.js';
import { chunkPool } from '../util/buffer-pool.js';

const GATHER_BYTES = chunkPool.size;
const GATHER_DELAY_MS = 20;

/**
 * Watches the source bytes as they pass, before any decompression: counts them for progress
 * and hashes them for the checksum (SPEC §5.1). Pipes and sockets deliver 16–64 KiB at a time;
 * such chunks are gathered into 1 MiB ones (one copy), so that everything downstream (decoders,
 * the qcow2 reader, writes) works per MiB. Large chunks pass as they are, and a partly filled chunk
 * goes on after GATHER_DELAY_MS: a slow source (a trickling upload, an archive extracted as it
 * arrives) is never held back for long.
 */
export class SourceTap extends Transform {
  bytes = 0;
  private readonly hash?: Hash;
  private lastReport = 0;
  private gathered: Buffer | undefined;
  private gatheredBytes = 0;
  private gatherTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly checksum: ChecksumSpec | undefined,
    private readonly total: number | undefined,
    private readonly progress?: (report: ProgressReport) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
    // Loaded only when a checksum is asked for: node:crypto costs every run ~4 ms at start.
    if (checksum) this.hash = process.getBuiltinModule('node:crypto').createHash(checksum.algorithm);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    const now = Date.now();
    if (this.progress && now - this.lastReport >= 200) {
      this.lastReport = now;
      this.progress({ bytes: this.bytes, total: this.total });
    }
    if (this.gatheredBytes === 0 && chunk.length >= GATHER_BYTES) {
      callback(null, chunk);
      return;
    }
    for (let at = 0; at < chunk.length; ) {
      this.gathered ??= chunkPool.take();
      const copied = chunk.copy(this.gathered, this.gatheredBytes, at);
      at += copied;
      this.gatheredBytes += copied;
      if (this.gatheredBytes === GATHER_BYTES) this.pushGathered();
    }
    if (this.gatheredBytes > 0) this.gatherTimer ??= setTimeout(() => this.pushGathered(), GATHER_DELAY_MS);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.pushGathered();
    this.progress?.({ bytes: this.bytes, total: this.total });
    callback();
  }

  private pushGathered(): void {
    clearTimeout(this.gatherTimer);
    this.gatherTimer = undefined;
    if (this.gatheredBytes === 0 || this.destroyed) return;
    this.push(this.gathered!.subarray(0, this.gatheredBytes));
    this.gathered = undefined;
    this.gatheredBytes = 0;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.gatherTimer);
    callback(error);
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
    // A source that failed (or was cancelled) before it got here would otherwise feed nothing,
    // end nothing and fail nothing: the import would wait on it until Node exits with 0.
    if (source.errored || source.destroyed) {
      tap.destroy(source.errored ?? new Error('the source was closed before it was read'));
      return tap;
    }
    source.on('error', (err) => tap.destroy(err));
    tap.once('close', () => {
      if (!source.destroyed) source.destroy();
    });
    return source.pipe(tap);
  }
}
