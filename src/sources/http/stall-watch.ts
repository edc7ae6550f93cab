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
 * Network time since the last MIN_PROGRESS_BYTES arrived: the measure of a stall, silent or
 * trickling. Shared by the watchdog (undici bodies, on a timer) and the direct Range client
 * (checked as bytes arrive; its socket timeout catches silence).
 */
export class ProgressWindow {
  /** Start of the current window, 0 while not waiting for the network. */
  private since = 0;
  /** Bytes received in the current window, and when the last of them came. */
  private bytes = 0;
  private lastByteAt = 0;

  constructor(private readonly now: () => number) {}

  /** Waiting for the network from now (a window already open goes on). */
  open(): void {
    if (this.since === 0) {
      this.since = this.now();
      this.bytes = 0;
    }
  }

  /** Not waiting for the network (the consumer is the slow side): nothing counts until open(). */
  close(): void {
    this.since = 0;
    this.bytes = 0;
  }

  /** Bytes arrived: enough of them start a new window. */
  received(bytes: number): void {
    this.open();
    this.bytes += bytes;
    this.lastByteAt = this.now();
    if (this.bytes >= MIN_PROGRESS_BYTES) {
      this.since = this.lastByteAt;
      this.bytes = 0;
    }
  }

  /** The stall once the window has lasted `stallMs`: silent since the last byte, or a trickle all along. */
  stalled(stallMs: number): StallError | undefined {
    const now = this.now();
    if (this.since === 0 || now - this.since < stallMs) return undefined;
    return new StallError(stallMs / 1000, now - this.lastByteAt >= stallMs ? 0 : this.bytes);
  }
}

/**
 * One coarse timer per body rather than one per chunk (a body is thousands of chunks): the
 * reader marks when it starts waiting for the network and what arrives; time spent waiting for
 * the consumer is not network time and never counts.
 */
export class StallWatchdog {
  private readonly window = new ProgressWindow(Date.now);
  private readonly timer: NodeJS.Timeout;

  constructor(
    stallMs: number,
    onStall: (err: StallError) => void,
  ) {
    this.timer = setInterval(
      () => {
        const stall = this.window.stalled(stallMs);
        if (!stall) return;
        this.window.close();
        onStall(stall);
      },
      Math.max(10, Math.min(1000, stallMs / 4)),
    );
    this.timer.unref();
  }

  /** Waiting for the network from now (a window already open goes on). */
  waiting(): void {
    this.window.open();
  }

  /** Bytes arrived: enough of them start a new window. */
  received(bytes: number): void {
    this.window.received(bytes);
  }

  /** Not waiting for the network (the consumer is the slow side). */
  idle(): void {
    this.window.close();
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
