import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * `mkdir -p`: returns the first directory it made (undefined if none), as mkdirSync's recursive
 * form does. One level at a time because that form reports a read-only file system as ENOENT
 * ("no such file or directory", which sends the user looking for the wrong thing); each level's own
 * mkdir says EROFS, EACCES or ENOTDIR. A file in the way is EEXIST, as there.
 */
export function makeDirectories(dir: string): string | undefined {
  const missing: string[] = [];
  for (let at = path.resolve(dir); !existsSync(at); at = path.dirname(at)) missing.unshift(at);
  if (missing.length === 0 && !statSync(dir).isDirectory()) {
    throw Object.assign(new Error(`EEXIST: file already exists, mkdir '${dir}'`), { code: 'EEXIST' });
  }
  for (const at of missing) mkdirSync(at);
  return missing[0];
}
