import { open, readdir, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { tryLock } from '../util/fs-ext.js';

/**
 * The names a file target uses next to its destination: `.NAME.partial-XXXXXXXX` while the disk is
 * written, `.NAME.old-XXXXXXXX` for the disk it replaces, set aside for a moment.
 */
export function temporaryName(destination: string, kind: 'partial' | 'old'): string {
  return path.join(path.dirname(destination), `.${path.basename(destination)}.${kind}-${randomBytes(4).toString('hex')}`);
}

/**
 * After a successful import: the temporary files of earlier imports to the same destination that
 * were killed (kill -9, OOM, a lost node) are removed, so they do not pile up. A partial file that
 * some process still holds locked (an import running now) stays. Without flock (fs-ext did not
 * build, or the file system has none) nothing is removed: there is no telling.
 */
export async function removeStaleTemporaries(destination: string, own: string): Promise<void> {
  const dir = path.dirname(destination);
  const prefixes = [`.${path.basename(destination)}.partial-`, `.${path.basename(destination)}.old-`];
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const file = path.join(dir, name);
    if (file === own || !prefixes.some((prefix) => name.startsWith(prefix))) continue;
    const handle = await open(file, 'r').catch(() => undefined);
    if (!handle) continue;
    try {
      const free = await tryLock(handle.fd);
      if (free === undefined) return;
      if (free) await unlink(file).catch(() => {});
    } finally {
      await handle.close().catch(() => {});
    }
  }
}
