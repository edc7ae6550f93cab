/**
 * CDI empties the data volume and the scratch volume before it writes (pkg/importer
 * data-processor.go, CleanDir). An attempt killed hard (an OOM kill, an eviction, a lost node,
 * the kubelet after the grace period) cleans nothing up, and the restarted pod gets the same
 * volume: a partial disk or a spill file then takes room the import needs, and an archive meets
 * its own half-extracted entries and fails on every restart. `lost+found` stays: it is the
 * filesystem's, not an earlier attempt's.
 */
import { readdir, rm } from 'node:fs/promises';
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

/** Asynchronous: a killed archive import may have left hundreds of thousands of files, and the metric must keep answering. */
export async function emptyVolume(dir: string, log: AppLogger): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return; // not there (block mode has no /data): nothing to empty
  }
  const leftovers = names.filter((name) => name !== 'lost+found');
  for (const name of leftovers) {
    try {
      await rm(path.join(dir, name), { recursive: true, force: true });
    } catch (err) {
      throw targetError(`cannot empty ${dir} before the import (${name}): ${fileProblem(err)}`, err);
    }
  }
  if (leftovers.length > 0) log.info({ dir, entries: leftovers.length, first: leftovers.slice(0, 3) }, 'removed what an earlier attempt left on the volume');
}
