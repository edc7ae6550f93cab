/**
 * Stall detection: waiting for the network `stallMs` without receiving MIN_PROGRESS_BYTES counts as
 * a dropped connection.
 */
import { noteBodyBytes, StallError } from './http-errors.js';

/**
 * Less than this in a whole stall timeout is a stall too, not only silence: a server that sends a
 * byte a second never went silent, and held an import for as long as it liked. 16 KiB in the
 * default 60 s is 270 bytes a second, far below any link a disk image could come over.
 */
export const MIN_PROGRESS_BYTES = 16 << 10;

/**
 * One coarse timer per body rather than one per chunk (a body is thousands of chunks): the
 * reader marks when it starts waiting for the network and what arrives; time spent waiting for
 * the consumer is not network time and never counts.
 */
export class StallWatchdog {
  /** Start of the current window of network time, 0 while not waiting for the network. */
  private since = 0;
  /** Bytes received in the current window, and when the last of them came. */
  private bytes = 0;
  private lastByteAt = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    stallMs: number,
    onStall: (err: StallError) => void,
  ) {
    this.timer = setInterval(
      () => {
        const now = Date.now();
        if (this.since && now - this.since >= stallMs) {
          // Silent since the last byte, or a trickle all along.
          const bytes = now - this.lastByteAt >= stallMs ? 0 : this.bytes;
          this.idle();
          onStall(new StallError(stallMs / 1000, bytes));
        }
      },
      Math.max(10, Math.min(1000, stallMs / 4)),
    );
    this.timer.unref();
  }

  /** Waiting for the network from now (a window already open goes on). */
  waiting(): void {
    if (this.since === 0) {
      this.since = Date.now();
      this.bytes = 0;
    }
  }

  /** Bytes arrived: enough of them start a new window. */
  received(bytes: number): void {
    this.waiting();
    this.bytes += bytes;
    this.lastByteAt = Date.now();
    if (this.bytes >= MIN_PROGRESS_BYTES) {
      this.since = Date.now();
      this.bytes = 0;
    }
  }

  /** Not waiting for the network (the consumer is the slow side). */
  idle(): void {
    this.since = 0;
    this.bytes = 0;
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
      watchdog.received(chunk.length);
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
