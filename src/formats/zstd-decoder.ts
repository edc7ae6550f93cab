import { Transform, type TransformCallback } from 'node:stream';
import { createRequire } from 'node:module';
import { DECODED_CHUNK, chunkPool } from '../util/buffer-pool.js';

const require = createRequire(import.meta.url);
type ZstdBinding = typeof import('zstd-napi/binding.js');

/**
 * A zstd stream decoder on zstd-napi's native context. zstd-napi's own DecompressStream pushes a
 * fresh 128 KiB buffer per call; filling large pooled chunks (DECODED_CHUNK) instead makes it 2–3× faster here. Multiple
 * concatenated frames are decoded as one stream, as `zstd -dc` does; ending inside a frame is an error.
 * Output waits for the reader, so memory stays bounded however well the data compresses.
 */
export class ZstdDecoder extends Transform {
  private readonly context: InstanceType<ZstdBinding['DCtx']>;
  private output = chunkPool.take(DECODED_CHUNK);
  private used = 0;
  private inFrame = false;
  /** Input left over when the reader stopped taking output; decoding resumes from _read(). */
  private paused: { input: Buffer; callback: TransformCallback } | undefined;

  constructor() {
    super({ readableHighWaterMark: DECODED_CHUNK, writableHighWaterMark: DECODED_CHUNK });
    const binding = require('zstd-napi/binding.js') as ZstdBinding;
    this.context = new binding.DCtx();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.decode(chunk, callback);
  }

  override _read(size: number): void {
    const paused = this.paused;
    this.paused = undefined;
    if (paused) this.decode(paused.input, paused.callback);
    // Transform parks the write callback until its next _read() when the buffer is full; a resumed
    // decode that pushed nothing more gets no further _read(), so release it here.
    if (!this.paused) super._read(size);
  }

  private decode(chunk: Buffer, callback: TransformCallback): void {
    let input = chunk;
    try {
      for (;;) {
        const [hint, produced, consumed] = this.context.decompressStream(this.output.subarray(this.used), input);
        this.used += produced;
        input = input.subarray(consumed);
        // 0 means a frame just ended; a call that moved nothing says nothing about frames.
        if (produced > 0 || consumed > 0) this.inFrame = hint !== 0;
        if (this.used === DECODED_CHUNK) {
          const wantsMore = this.push(this.output);
          this.output = chunkPool.take(DECODED_CHUNK);
          this.used = 0;
          if (!wantsMore) {
            // A few KiB of zstd can stand for gigabytes: wait for the reader before decoding on.
            this.paused = { input, callback };
            return;
          }
          continue; // the decoder may hold more output for the same input
        }
        if (input.length === 0) break;
      }
    } catch (err) {
      callback(err as Error);
      return;
    }
    // zstd copies what it keeps into its own window: a pooled input chunk can be reused now.
    chunkPool.give(chunk);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.used > 0) this.push(this.output.subarray(0, this.used));
    callback(this.inFrame ? new Error('the stream ends in the middle of a compressed frame') : null);
  }
}
