import { constants } from 'node:fs';
import { lstat, open, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { tryLock } from '../util/fs-ext.js';
import { randomHex } from '../util/random-hex.js';

/**
 * The names a file target uses next to its destination: `.NAME.partial-XXXXXXXX` while the disk is
 * written, `.NAME.old-XXXXXXXX` for the disk it replaces, set aside for a moment.
 */
export function temporaryName(destination: string, kind: 'partial' | 'old'): string {
  return path.join(path.dirname(destination), `${prefix(destination, kind)}${randomHex(8)}`);
}

const prefix = (destination: string, kind: 'partial' | 'old') => `.${fitted(path.basename(destination))}.${kind}-`;

/** A file name's limit in bytes on Linux file systems (NAME_MAX). */
const NAME_MAX = 255;
/** What a temporary name adds to the destination's: `.`, `.partial-` and the 8 hex digits. */
const ADDED = '..partial-'.length + 8;

/**
 * The destination's name, cut so the temporary name stays within NAME_MAX: a name the file system
 * takes (up to 255 bytes) must not fail for its longer temporary sibling. A cut name ends in a CRC
 * of the whole one, so destinations that share their first 228 bytes keep apart temporaries (the
 * cleanup of stale ones matches by this prefix).
 */
function fitted(name: string): string {
  const bytes = Buffer.from(name);
  if (bytes.length + ADDED <= NAME_MAX) return name;
  const tag = `~${crc32(bytes).toString(16).padStart(8, '0')}`;
  let cut = NAME_MAX - ADDED - tag.length;
  while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--; // not inside a UTF-8 character
  return `${bytes.subarray(0, cut).toString()}${tag}`;
}

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
