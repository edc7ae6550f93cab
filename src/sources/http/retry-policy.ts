/** Bounded exponential backoff shared by the resumable stream and the Range reader. */
export interface RetryPolicy {
  /** Failures in a row (without a byte of progress in between) before giving up. */
  retries: number;
  /** Resumes allowed over the whole download, progress or not: a budget against flapping servers. */
  maxResumes: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Told of each retry: why, and how many body bytes had arrived (0 before any). */
export type RetryNotice = (reason: string, received: number) => void;

export const defaultRetryPolicy: RetryPolicy = { retries: 6, maxResumes: 50, baseDelayMs: 500, maxDelayMs: 10_000 };

/** Delay before retry number `attempt` (0-based): base, 2×base, 4×base… capped. */
export function backoffDelay(attempt: number, policy: RetryPolicy): number {
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt, 30));
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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
