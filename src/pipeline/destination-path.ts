/**
 * What a file destination really is, before anything is written. The CLI writes a new file and
 * renames it into place, which replaces whatever the name stood for: a device node (`/dev/null`),
 * a named pipe, the `/dev/stdout` link or a symbolic link would silently become a regular file.
 * So: block devices are written as devices, symbolic links are followed to the file they name,
 * and everything else that is not a regular file is refused, as is the source file itself.
 */
import { lstat, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Stats } from 'node:fs';
import { targetError } from '../errors.js';

export type Destination =
  | { kind: 'new'; path: string }
  /** An existing regular file, to be replaced; `mode`: its permission bits. */
  | { kind: 'file'; path: string; mode: number }
  | { kind: 'block' }
  | { kind: 'directory' };

/** Symbolic links followed at most; the kernel's own limit is 40. */
const MAX_LINKS = 40;

export async function inspectDestination(destination: string, sourceFile?: string): Promise<Destination> {
  const entry = await lstat(destination).catch(() => undefined);
  if (!entry) return { kind: 'new', path: destination };
  let finalPath = destination;
  if (entry.isSymbolicLink()) finalPath = await followLinks(destination);
  const info = await stat(finalPath).catch(() => undefined);
  if (!info) return { kind: 'new', path: finalPath };
  if (info.isBlockDevice()) return { kind: 'block' };
  if (info.isDirectory()) return { kind: 'directory' };
  const what = kindOf(info);
  if (what) throw targetError(`${destination} is ${what}: give a regular file (or a block device) as the destination`);
  if (sourceFile) {
    const source = await stat(sourceFile).catch(() => undefined);
    if (source && source.dev === info.dev && source.ino === info.ino) {
      throw targetError(`${destination} is the source image itself: write the output to another file`);
    }
  }
  return { kind: 'file', path: finalPath, mode: info.mode & 0o777 };
}

function kindOf(info: Stats): string | undefined {
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isFIFO()) return 'a named pipe';
  if (info.isSocket()) return 'a socket';
  if (!info.isFile()) return 'not a regular file';
  return undefined;
}

/**
 * The path a symbolic link leads to, link by link, as qemu-img's open would: a dangling link
 * gives the file it names (created there, the link kept), a loop is refused. `/dev/stdout`,
 * `/dev/fd/N`, `/proc/self/fd/N` name an open file descriptor: even when it is a regular file,
 * renaming a new file over its name leaves the descriptor's reader with nothing, so they are refused.
 */
async function followLinks(destination: string): Promise<string> {
  let current = path.resolve(destination);
  for (let hops = 0; hops < MAX_LINKS; hops++) {
    if (/^\/proc\/[^/]+\/fd\//.test(current) || /^\/dev\/fd\//.test(current)) {
      throw targetError(`${destination} is a link to an open file descriptor (${current}): give a file name as the destination`);
    }
    const target = await readlink(current).catch(() => undefined);
    if (target === undefined) return (await realpath(current).catch(() => undefined)) ?? current;
    // A relative target is relative to the directory the link really is in: its path as written
    // may pass through other links (a/dirlink/l → ../f is real/f, not a/f).
    const directory = await realpath(path.dirname(current)).catch(() => path.dirname(current));
    current = path.resolve(directory, target);
  }
  throw targetError(`${destination}: too many levels of symbolic links (a loop?): give the file itself as the destination`);
}
