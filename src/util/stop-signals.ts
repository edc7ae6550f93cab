/**
 * SIGTERM, SIGINT and SIGHUP between the process start and the moment a command has its handler in place.
 *
 * Node's default for both is to die on the spot: no termination message in pod mode, no clean-up.
 * Kubernetes may stop a pod at any time, including the first few hundred milliseconds while the
 * bundle loads and the servers bind. So main() holds these signals from its first line, and the
 * command that claims them (onStopSignals) gets a held one replayed at once.
 */

/** SIGHUP: the terminal closed (an SSH session dropped); cleaned up after like Ctrl-C. */
const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/**
 * A held signal nobody claims within this long gets Node's default after all: a command without
 * its own handling (info, help) must still die on Ctrl-C, a moment later.
 */
const UNCLAIMED_MS = 1000;

let held: NodeJS.Signals | undefined;
let unclaimedTimer: NodeJS.Timeout | undefined;
let holding = false;

function hold(signal: NodeJS.Signals): void {
  held ??= signal;
  unclaimedTimer ??= setTimeout(() => {
    release();
    process.kill(process.pid, signal);
  }, UNCLAIMED_MS).unref();
}

function release(): void {
  if (!holding) return;
  holding = false;
  clearTimeout(unclaimedTimer);
  unclaimedTimer = undefined;
  for (const signal of STOP_SIGNALS) process.off(signal, hold);
}

/** What bin/cdi-importer held while the bundle loaded. */
interface EarlySignals {
  held: NodeJS.Signals[];
  release(): void;
}
const EARLY_SIGNALS = Symbol.for('cdi-importer.early-signals');

/** From now until a command claims them, the stop signals are remembered instead of fatal. */
export function holdStopSignals(): void {
  if (holding) return;
  holding = true;
  for (const signal of STOP_SIGNALS) process.on(signal, hold);
  // Take over from the launcher's holder (ours is in place first, so nothing falls in between).
  const early = (globalThis as Record<symbol, EarlySignals | undefined>)[EARLY_SIGNALS];
  if (early) {
    early.release();
    delete (globalThis as Record<symbol, EarlySignals | undefined>)[EARLY_SIGNALS];
    if (early.held[0]) hold(early.held[0]);
  }
}

/**
 * Handles the stop signals from now on, starting with one that arrived while they were held.
 * Returns the function that removes the handler again.
 */
export function onStopSignals(handler: (signal: NodeJS.Signals) => void): () => void {
  for (const signal of STOP_SIGNALS) process.on(signal, handler);
  const early = held;
  held = undefined;
  release();
  if (early) setImmediate(() => handler(early));
  return () => {
    for (const signal of STOP_SIGNALS) process.off(signal, handler);
  };
}
