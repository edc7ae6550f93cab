/**
 * `digits` random hex digits, for names that only have to differ from a concurrent run's (temporary
 * and spill files, which are also locked or opened exclusively). Math.random rather than
 * node:crypto: V8 seeds it per process from the system's entropy, and loading node:crypto would
 * cost every run ~4 ms at start (the CLI's start is a fifth of a small conversion's time).
 */
export function randomHex(digits: number): string {
  let hex = '';
  while (hex.length < digits) hex += Math.floor(Math.random() * 0x10000).toString(16).padStart(4, '0');
  return hex.slice(0, digits);
}
