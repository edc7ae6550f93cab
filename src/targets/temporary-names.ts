import { constants } from 'node:fs';
import { lstat, open, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { tryLock } from '../util/fs-ext.js';
import { randomHex } from '../util/random-hex.js';

/**
 * The names a file target uses next to its destination: `.NAME.partial-XXXXXXXX` while the disk is
 * written, `.NAME.old-XXXXXXXX` for the disk it replaces, set aside for a moment.
 */
export function temporaryName(destination: string, kind: 'partial' | 'old'): string {
  return path.join(path.dirname(destination), `${prefix(destination, kind)}${randomHex(8)}`);
}

const prefix = (destination: string, kind: 'partial' | 'old') => `.${path.basename(destination)}.${kind}-`;

/** Written to this recently, a partial file may belong to an import that has opened it and not yet locked it. */
const SETTLE_MS = 60_000;

/**
 * After a successful import: the temporary files of earlier imports to the same destination that
 * were killed (kill -9, OOM, a lost node) are removed, so they do not pile up. Only regular files
 * whose names are exactly what an import makes (`.NAME.partial-` or `.NAME.old-` and 8 hex digits),
 * not written to for a minute, and that no process holds locked (an import running now locks its own).
 * Without flock (fs-ext did not build, or the file system has none) nothing is removed: there is
 * no telling.
 */
export async function removeStaleTemporaries(destination: string, own: string): Promise<void> {
  const dir = path.dirname(destination);
  const prefixes = [prefix(destination, 'partial'), prefix(destination, 'old')];
  const ours = (name: string) => prefixes.some((prefix) => name.startsWith(prefix) && /^[0-9a-f]{8}$/.test(name.slice(prefix.length)));
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const file = path.join(dir, name);
    if (file === own || !ours(name)) continue;
    const info = await lstat(file).catch(() => undefined);
    if (!info?.isFile() || Date.now() - info.mtimeMs < SETTLE_MS) continue;
    // O_NONBLOCK and O_NOFOLLOW: whatever took the name meanwhile, the open neither waits nor follows.
    const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW).catch(() => undefined);
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
