/** Bounded exponential backoff shared by the resumable stream and the Range reader. */
import type { IncomingHttpHeaders } from 'node:http';
import { oneLine } from '../../errors.js';
import { monotonicMs } from '../../util/monotonic-clock.js';
import { RetryableFailure, statusText } from './http-errors.js';
export interface RetryPolicy {
  /** Failures in a row (without a byte of progress in between) before giving up. */
  retries: number;
  /**
   * Resumes allowed over a whole download after little progress (under 256 KiB since the one
   * before; a Range read's resumes all count): a budget against servers that flap. Stalls have a
   * budget of this size of their own (StallBudget).
   */
  maxResumes: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * Told of each retry: why, how many body bytes had arrived (0 before any), the wait before it, and
 * for a Range read (random access) the file offset it started at.
 */
export type RetryNotice = (reason: string, received: number, delayMs: number, rangeStart?: number) => void;

export const defaultRetryPolicy: RetryPolicy = { retries: 6, maxResumes: 50, baseDelayMs: 500, maxDelayMs: 10_000 };

/**
 * Stalls over a whole download (the stream, or every Range read of a reader): each costs a stall
 * timeout, so one that comes after little progress uses the resume budget, and a server that sends
 * a little on each connection and then goes silent fails after `maxResumes` of them instead of being
 * waited for without end. After this many bytes since the previous stall one is free: a large image
 * over a link that pauses now and then still finishes. Reads in flight together stall together when
 * the link goes quiet: stalls within a stall timeout of the first are that one pause, counted once.
 */
export class StallBudget {
  static readonly FREE_AFTER_BYTES = 16 << 20;
  private bytesSinceStall = 0;
  private costly = 0;
  private pauseStartedAt = -Infinity;
  private pauseVerdict = true;

  constructor(
    private readonly maxResumes: number,
    private readonly stallMs: number,
  ) {}

  /** Stalls that used the budget so far. */
  get counted(): number {
    return this.costly;
  }

  progressed(bytes: number): void {
    this.bytesSinceStall += bytes;
  }

  /** Counts a stall; false when it is one too many. */
  stalled(): boolean {
    const now = monotonicMs();
    if (now - this.pauseStartedAt < this.stallMs) return this.pauseVerdict;
    const free = this.bytesSinceStall >= StallBudget.FREE_AFTER_BYTES;
    this.bytesSinceStall = 0;
    this.pauseStartedAt = now;
    this.pauseVerdict = free || ++this.costly <= this.maxResumes;
    return this.pauseVerdict;
  }
}

/** Delay before retry number `attempt` (0-based): base, 2×base, 4×base… capped. */
function backoffDelay(attempt: number, policy: RetryPolicy): number {
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt, 30));
}

/** The longest a server's Retry-After is followed: longer asks wait this long, then the retry budget decides. */
export const MAX_RETRY_AFTER_MS = 60_000;

/**
 * A busy server's Retry-After (RFC 9110 §10.2.3: seconds or an HTTP date) in milliseconds, at most
 * MAX_RETRY_AFTER_MS; undefined when absent or unreadable. Registries (429) and proxies (503) send it.
 */
export function retryAfterMs(headers: IncomingHttpHeaders | undefined, now = Date.now()): number | undefined {
  const raw = headers?.['retry-after'];
  const value = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  if (!value) return undefined;
  const ms = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/** The wait before retry number `attempt`: the backoff, or longer if the server asked for longer. */
export function retryDelay(attempt: number, policy: RetryPolicy, retryAfter?: number): number {
  return Math.max(backoffDelay(attempt, policy), retryAfter ?? 0);
}

/**
 * Before asking a busy server (429, 5xx) again: says so, then waits the backoff or the server's
 * Retry-After, whichever is longer. `attempt` counts the tries so far (0-based).
 */
export async function waitForBusyServer(
  attempt: number,
  policy: RetryPolicy,
  answer: { statusCode: number; headers: IncomingHttpHeaders },
  signal: AbortSignal,
  onRetry?: RetryNotice,
): Promise<void> {
  const delay = retryDelay(attempt, policy, retryAfterMs(answer.headers));
  onRetry?.(`the server answered ${statusText(answer.statusCode)}`, 0, delay);
  await sleep(delay, signal);
}

/**
 * Before trying again after a dropped connection or another retryable failure: says why (and how
 * many body bytes had arrived), then waits the backoff, or the server's Retry-After when longer.
 */
export async function waitAfterFailure(
  attempt: number,
  policy: RetryPolicy,
  err: unknown,
  received: number,
  signal: AbortSignal,
  onRetry?: RetryNotice,
  rangeStart?: number,
): Promise<void> {
  const delay = retryDelay(attempt, policy, err instanceof RetryableFailure ? err.retryAfterMs : undefined);
  onRetry?.(oneLine(err), received, delay, rangeStart);
  await sleep(delay, signal);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
