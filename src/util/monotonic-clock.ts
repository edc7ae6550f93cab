/** Milliseconds on a monotonic clock. Not performance.now(): that global loads perf_hooks (4 ms of a run's start). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
