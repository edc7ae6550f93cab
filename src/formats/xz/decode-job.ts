import { ChangeSignal } from '../../util/change-signal.js';
import { DECODED_CHUNK, chunkPool } from '../../util/buffer-pool.js';
import { LZMA_OK, LZMA_STREAM_END, LzmaDecoderEngine, lzmaReason } from './lzma-engine.js';

const EMPTY = Buffer.alloc(0);
/** Queued input pieces smaller than this are copied together before decoding (see mergeSmallPieces). */
const MERGE_BELOW = 64 << 10;

export interface DecodeJobLimits {
  /** Decoded bytes held for the reader before decoding pauses. */
  outputAhead: number;
  /** Compressed bytes queued before write() waits. */
  inputAhead: number;
}

/** Hears of each written buffer once the decoder has consumed all of it. */
export type ConsumedListener = (input: Buffer) => void;

/**
 * One liblzma engine decoding one .xz stream (a single wrapped block, or the rest of the file)
 * on the thread pool, between a bounded input queue and a bounded queue of output chunks (DECODED_CHUNK).
 * Decoding runs ahead of the reader only as far as `outputAhead`, so memory stays bounded however
 * well the data compresses.
 */
export class DecodeJob {
  private readonly engine = new LzmaDecoderEngine();
  private readonly input: Buffer[] = [];
  private inputOffset = 0;
  private inputBytes = 0;
  private inputEnded = false;
  private readonly output: Buffer[] = [];
  private outputBytes = 0;
  private done = false;
  private failure: Error | undefined;
  private stopped = false;
  private readonly changes = new ChangeSignal();

  constructor(
    private readonly limits: DecodeJobLimits,
    private readonly consumed?: ConsumedListener,
  ) {
    void this.run();
  }

  /** Queues compressed bytes; waits while the queue is full. Throws the job's failure. */
  async write(chunk: Buffer): Promise<void> {
    this.throwIfFailed();
    if (chunk.length === 0) return;
    this.input.push(chunk);
    this.inputBytes += chunk.length;
    this.changes.notify();
    while (this.inputBytes >= this.limits.inputAhead && !this.failure && !this.stopped) await this.changes.wait();
    this.throwIfFailed();
  }

  /** No more input after `last`. */
  end(last?: Buffer): void {
    if (last && last.length > 0) {
      this.input.push(last);
      this.inputBytes += last.length;
    }
    this.inputEnded = true;
    this.changes.notify();
  }

  /** The next decoded chunk in order, or null once the stream has ended. Throws the job's failure. */
  async read(): Promise<Buffer | null> {
    for (;;) {
      this.throwIfFailed();
      const chunk = this.output.shift();
      if (chunk) {
        this.outputBytes -= chunk.length;
        this.changes.notify();
        return chunk;
      }
      if (this.done || this.stopped) return null;
      await this.changes.wait();
    }
  }

  /** Stops decoding and frees the engine (after a running step, if any). */
  stop(): void {
    this.stopped = true;
    this.changes.notify();
  }

  private async run(): Promise<void> {
    let out = chunkPool.take(DECODED_CHUNK);
    let used = 0;
    try {
      while (!this.stopped) {
        if (this.outputBytes >= this.limits.outputAhead || (this.input.length === 0 && !this.inputEnded)) {
          await this.changes.wait();
          continue;
        }
        this.mergeSmallPieces();
        const piece = this.input[0] ?? EMPTY;
        const finish = this.inputEnded && this.input.length <= 1;
        const available = piece.length - this.inputOffset;
        const step = await this.engine.step(piece, this.inputOffset, available, out, used, finish);
        used += step.produced;
        if (step.consumed > 0) {
          this.inputOffset += step.consumed;
          if (this.inputOffset === piece.length) {
            this.input.shift();
            this.inputBytes -= piece.length;
            this.inputOffset = 0;
            this.consumed?.(piece);
          }
        }
        const ended = step.ret === LZMA_STREAM_END;
        if (!ended && step.ret !== LZMA_OK) throw new Error(lzmaReason(step.ret));
        if (used === out.length || (ended && used > 0)) {
          this.output.push(used === out.length ? out : out.subarray(0, used));
          this.outputBytes += used;
          out = chunkPool.take(DECODED_CHUNK);
          used = 0;
        }
        if (ended) {
          if (this.input.length > 0) throw new Error('data follows the end of the stream');
          this.done = true;
          break;
        }
        if (finish && step.produced === 0 && step.consumed === 0) throw new Error(lzmaReason(10));
        this.changes.notify();
      }
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(String(err));
    } finally {
      chunkPool.give(out); // never handed out: the next block's buffer, or a partial one after a failure
      this.engine.close();
      this.changes.notify();
    }
  }

  /**
   * Copies small queued pieces into one before a step: each step is a trip to the thread pool, and
   * a run of tiny blocks arrives as pieces of a few dozen bytes (header, data, check per block).
   */
  private mergeSmallPieces(): void {
    if (this.inputOffset !== 0 || this.input.length < 2 || this.input[0]!.length >= MERGE_BELOW) return;
    let count = 0;
    let bytes = 0;
    while (count < this.input.length && this.input[count]!.length < MERGE_BELOW && bytes < MERGE_BELOW) bytes += this.input[count++]!.length;
    if (count < 2) return;
    const pieces = this.input.splice(0, count, Buffer.concat(this.input.slice(0, count), bytes));
    for (const piece of pieces) this.consumed?.(piece);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }
}
