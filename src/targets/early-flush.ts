/**
 * Flushes a synced target while the import is still running. The final fsync of an import used to
 * write out everything at the end, after the last byte was decoded: 0.55 s for 820 MB here, with
 * the CPU idle. An fdatasync after every FLUSH_EVERY bytes written (one at a time, not waited for
 * by the writes) overlaps that disk work with decoding, and leaves the final fsync little to do
 * (A/B in one run: 2 GiB qcow2 import 0.90 -> 0.73 s, its .xz 1.98 -> 1.75 s, 1 GiB raw.zst 0.93 -> 0.70 s).
 *
 * An early flush's error is kept and thrown by settle(): Linux reports a write-back error to one
 * fsync of a file only, so the final fsync could succeed after an early one had failed.
 */
const FLUSH_EVERY = 128 << 20;

export class EarlyFlush {
  private unflushed = 0;
  private running?: Promise<void>;
  private failure?: { error: unknown };

  constructor(
    private readonly flush: () => Promise<void>,
    private readonly every = FLUSH_EVERY,
  ) {}

  /** Counts bytes written; starts a flush once enough have gathered and none is running. */
  wrote(bytes: number): void {
    this.unflushed += bytes;
    if (this.unflushed < this.every || this.running || this.failure) return;
    this.unflushed = 0;
    this.running = this.flush().then(
      () => {
        this.running = undefined;
      },
      (error: unknown) => {
        this.running = undefined;
        this.failure = { error };
      },
    );
  }

  /** Waits for the flush in progress; throws the first early flush's error. */
  async settle(): Promise<void> {
    await this.running;
    if (this.failure) throw this.failure.error;
  }
}
