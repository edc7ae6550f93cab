/**
 * Clean-ups that must run even when the process is made to exit before the pipeline unwinds: a
 * second Ctrl-C at the terminal, or a pod whose import did not stop within its grace period.
 * Without them a forced exit leaves a hidden `.partial` file, a scratch spill or half an extracted
 * archive behind. Each clean-up is synchronous because nothing asynchronous runs after
 * `process.exit`; each undoes only what its owner created.
 */
type Cleanup = () => void;

const cleanups = new Set<Cleanup>();

/** Registers `cleanup` until the returned function is called (when the owner has cleaned up itself). */
export function cleanUpOnForcedExit(cleanup: Cleanup): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

/** Runs every registered clean-up, newest first, once; failures are ignored (best effort on the way out). */
export function runForcedExitCleanups(): void {
  const pending = [...cleanups].reverse();
  cleanups.clear();
  for (const cleanup of pending) {
    try {
      cleanup();
    } catch {
      // Keep going: the others may still succeed.
    }
  }
}
