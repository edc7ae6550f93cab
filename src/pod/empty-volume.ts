/**
 * CDI empties the data volume and the scratch volume before it writes (pkg/importer
 * data-processor.go, CleanDir). An attempt killed hard (an OOM kill, an eviction, a lost node,
 * the kubelet after the grace period) cleans nothing up, and the restarted pod gets the same
 * volume: a partial disk or a spill file then takes room the import needs, and an archive meets
 * its own half-extracted entries and fails on every restart. `lost+found` stays: it is the
 * filesystem's, not an earlier attempt's.
 */
import { lstat, opendir, rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fileProblem, targetError } from '../errors.js';
import type { AppLogger } from '../util/logger.js';
import { ROOT_ENV } from './paths.js';

/**
 * Only where the volumes are the pod's own: inside Kubernetes (which sets KUBERNETES_SERVICE_HOST
 * in every container) or under a root given on purpose (CDI_IMPORTER_ROOT). Pod mode started by
 * hand on a workstation must not wipe a /data that belongs to someone.
 */
export function volumesAreThePods(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env.KUBERNETES_SERVICE_HOST) || Boolean(env[ROOT_ENV]);
}

/** Removals in flight at once: enough to keep the thread pool busy, few enough for signals and the metric to get through. */
const REMOVALS_IN_FLIGHT = 64;

/**
 * Empties `dir` (keeping lost+found). A killed archive import may have left a million files: they
 * are removed a batch at a time, so the event loop stays free (the metric answers, a SIGTERM is
 * acted on at once), and `signal` stops it between batches; the next attempt removes the rest.
 */
export async function emptyVolume(dir: string, log: AppLogger, signal?: AbortSignal): Promise<void> {
  let removed = 0;
  const leftovers: string[] = [];
  try {
    await removeEntries(dir, signal, (name, depth) => {
      // Said at once: a million entries take a while, and the log should say why.
      if (removed === 0) log.info({ dir }, 'removing what an earlier attempt left on the volume');
      if (depth === 0 && leftovers.length < 3) leftovers.push(name);
      removed++;
    });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && removed === 0) return; // not there (block mode has no /data)
    const where = (err as NodeJS.ErrnoException).path;
    throw targetError(`cannot empty ${dir} before the import${where ? ` (${where})` : ''}: ${fileProblem(err)}`, err);
  }
  if (removed > 0) log.info({ dir, entries: removed, first: leftovers }, 'removed what an earlier attempt left on the volume');
}

/**
 * Removes what `dir` holds, depth first, REMOVALS_IN_FLIGHT at a time (lost+found at the top
 * stays). Passes repeat until one finds nothing: removing names while reading the directory may
 * let a file system skip some.
 */
async function removeEntries(dir: string, signal: AbortSignal | undefined, removedOne: (name: string, depth: number) => void, depth = 0): Promise<void> {
  for (let found = true; found; ) {
    found = false;
    const batch: Promise<void>[] = [];
    const flush = async () => {
      await Promise.all(batch.splice(0));
      signal?.throwIfAborted();
    };
    // Read as a stream: a directory of a million names is never held in memory at once.
    for await (const entry of await opendir(dir, { bufferSize: REMOVALS_IN_FLIGHT })) {
      if (depth === 0 && entry.name === 'lost+found') continue;
      found = true;
      const child = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        await flush();
        await removeDirectory(child, signal, removedOne, depth);
        removedOne(entry.name, depth);
        continue;
      }
      const removal = unlink(child).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return;
        // A directory the file system did not say was one (no d_type); anything else that cannot
        // be removed (immutable, read-only) fails with its own error.
        if ((err.code !== 'EISDIR' && err.code !== 'EPERM') || !(await lstat(child).catch(() => undefined))?.isDirectory()) throw err;
        await removeDirectory(child, signal, removedOne, depth);
      });
      const counted = removal.then(() => removedOne(entry.name, depth));
      counted.catch(() => {}); // thrown by the flush that awaits it; until then it must not count as unhandled
      batch.push(counted);
      if (batch.length >= REMOVALS_IN_FLIGHT) await flush();
    }
    await flush();
  }
}

async function removeDirectory(dir: string, signal: AbortSignal | undefined, removedOne: (name: string, depth: number) => void, depth: number): Promise<void> {
  await removeEntries(dir, signal, removedOne, depth + 1);
  await rmdir(dir);
}
