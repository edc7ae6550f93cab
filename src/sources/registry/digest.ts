/** sha256 digest checks for manifests (whole) and blobs (as they stream). */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { badInput } from '../../errors.js';

const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;

export function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Only sha256 is read: it is what every registry writes, and a digest we cannot check is no digest. */
export function checkDigestSyntax(digest: unknown, what: string): string {
  if (typeof digest !== 'string' || !SHA256_DIGEST.test(digest)) {
    throw badInput(`${what} has digest ${JSON.stringify(digest)}, expected sha256: followed by 64 hex digits`);
  }
  return digest;
}

/**
 * Passes a blob through while hashing it; fails as soon as it grows past the size its descriptor
 * gave, and at the end when the digest or size differ. Nothing after this trusts unverified
 * bytes past the end: consumers see the error before the stream ends.
 */
export class DigestVerifier extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;

  constructor(
    private readonly digest: string,
    private readonly size: number | undefined,
    private readonly what: string,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.size !== undefined && this.bytes > this.size) {
      callback(badInput(`${this.what} is larger than the ${this.size} bytes its manifest gives: the registry served different data`));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const actual = `sha256:${this.hash.digest('hex')}`;
    if (this.size !== undefined && this.bytes !== this.size) {
      callback(badInput(`${this.what} is ${this.bytes} bytes, but its manifest gives ${this.size}: the download is truncated or the blob changed`));
    } else if (actual !== this.digest) {
      callback(badInput(`digest mismatch for ${this.what}: expected ${this.digest}, calculated ${actual}; the blob in the registry is corrupt or was tampered with`));
    } else {
      callback();
    }
  }
}
