/** Stall detection: waiting for the network `stallMs` without a byte counts as a dropped connection. */
import { noteBodyBytes, StallError } from './http-errors.js';

/**
 * One coarse timer per body rather than one per chunk (a body is thousands of chunks): the
 * reader marks when it starts waiting for the network and when a chunk arrives; time spent
 * waiting for the consumer is not network time and never counts.
 */
export class StallWatchdog {
  private waitingSince = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    stallMs: number,
    onStall: (err: StallError) => void,
  ) {
    this.timer = setInterval(
      () => {
        if (this.waitingSince && Date.now() - this.waitingSince >= stallMs) {
          this.waitingSince = 0;
          onStall(new StallError(stallMs / 1000));
        }
      },
      Math.max(10, Math.min(1000, stallMs / 4)),
    );
    this.timer.unref();
  }

  /** Waiting for the network from now. */
  waiting(): void {
    this.waitingSince = Date.now();
  }

  /** Not waiting for the network (a chunk arrived, or the consumer is the slow side). */
  idle(): void {
    this.waitingSince = 0;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * Reads a whole (Range-limited) body, watching for stalls and refusing more than `limit` bytes.
 * With `into` (at least `limit` bytes), the body is copied there instead of into a new buffer,
 * and a failure notes how many bytes had arrived (`bodyBytesBefore`).
 */
export async function readBodyFully(
  body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown },
  stallMs: number,
  limit: number,
  into?: Buffer,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  const watchdog = new StallWatchdog(stallMs, (err) => body.destroy(err));
  try {
    watchdog.waiting();
    for await (const chunk of body) {
      watchdog.waiting();
      if (total + chunk.length > limit) {
        body.destroy();
        throw new Error(`the server sent more than the ${limit} bytes asked for`);
      }
      if (into) chunk.copy(into, total);
      else chunks.push(chunk);
      total += chunk.length;
    }
  } catch (err) {
    throw into ? noteBodyBytes(err, total) : err;
  } finally {
    watchdog.stop();
  }
  return into ? into.subarray(0, total) : Buffer.concat(chunks, total);
}
