/**
 * What a file destination really is, before anything is written. The CLI writes a new file and
 * renames it into place, which replaces whatever the name stood for: a device node (`/dev/null`),
 * a named pipe, the `/dev/stdout` link or a symbolic link would silently become a regular file.
 * So: block devices are written as devices, symbolic links are followed to the file they name,
 * and everything else that is not a regular file is refused, as is the source file itself.
 */
import { access, readlink, realpath, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import type { Stats } from 'node:fs';
import { targetError } from '../errors.js';

export type Destination =
  | { kind: 'new'; path: string }
  /** An existing regular file, to be replaced; `mode`: its permission bits; `uid`/`gid`: its owner. */
  | { kind: 'file'; path: string; mode: number; uid: number; gid: number }
  | { kind: 'block' }
  | { kind: 'directory' };

/** S_ISVTX, which Node's fs.constants leaves out. */
const STICKY_BIT = 0o1000;

/** Symbolic links followed at most; the kernel's own limit is 40. */
const MAX_LINKS = 40;

export async function inspectDestination(destination: string, sourceFile?: string): Promise<Destination> {
  // `out/` names a directory, to the kernel (ENOTDIR, EISDIR) and so to qemu-img: never the file
  // `out`, which path handling without the slash would create, or replace when it exists.
  if (destination.endsWith('/')) {
    const bare = destination.replace(/\/+$/, '');
    // Without the slash: with it, a file fails to stat as ENOTDIR, as if it were missing.
    const info = await stat(bare || '/').catch(() => undefined);
    if (info?.isDirectory()) return { kind: 'directory' };
    throw targetError(
      info
        ? `${destination} ends in /, a directory, but ${bare} is not one: leave the / out to write ${bare} itself, or give another file name`
        : `${destination} ends in /, a directory, and there is none: create it first and name the disk image inside it (e.g. ${bare}/disk.img)`,
    );
  }
  const finalPath = await resolveDestination(destination);
  const info = await stat(finalPath).catch(() => undefined);
  if (!info) {
    // A device name mistyped (`/dev/sdz9`) would become a regular file in /dev, held in memory
    // (devtmpfs), and the import would look done (found by a QA pass). /dev/shm is meant for files.
    if (finalPath.startsWith('/dev/') && !finalPath.startsWith('/dev/shm/')) {
      throw targetError(`${destination} does not exist: there is no such device, and a new file in /dev would live in memory, not on a disk; check the device name (lsblk lists them)`);
    }
    return { kind: 'new', path: finalPath };
  }
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
  // Renaming over a file needs only the directory's permission; qemu-img, cp and a shell's `>` need
  // the file's own, so a disk made read-only to keep it (chmod a-w) is not replaced here either.
  await access(finalPath, constants.W_OK).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EACCES') {
      throw targetError(`${destination} is not writable (permission denied), so it is not replaced: make it writable (chmod u+w) to replace it, or give another file name`, err);
    }
  });
  return { kind: 'file', path: finalPath, mode: info.mode & 0o777, uid: info.uid, gid: info.gid };
}

/**
 * A file replaced by renaming a new one over it: in a directory with the sticky bit (as /tmp), only
 * the file's owner, the directory's owner or root may do that, and the rename would fail only once
 * the whole image was written (qemu-img, writing the file in place, needs only the file's own
 * permission). Refused up front instead, in words. `directory`: the stat of the file's directory.
 */
export function refuseStickyReplace(destination: Extract<Destination, { kind: 'file' }>, directory: Stats, shown: string, euid = process.geteuid?.()): void {
  if (euid === undefined || euid === 0 || euid === destination.uid) return;
  if ((directory.mode & STICKY_BIT) === 0 || directory.uid === euid) return;
  throw targetError(
    `${shown} belongs to another user (uid ${destination.uid}) in ${path.dirname(destination.path)}, a directory with the sticky bit, where only its owner can replace it: give another file name, or have its owner remove it`,
  );
}

function kindOf(info: Stats): string | undefined {
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isFIFO()) return 'a named pipe';
  if (info.isSocket()) return 'a socket';
  if (!info.isFile()) return 'not a regular file';
  return undefined;
}

/**
 * The file a destination names, as the kernel resolves it when qemu-img opens it to create it:
 * the directory part through every link and `..` in the order they come (`dirlink/../f` is the
 * parent of what dirlink points to, never just `f`), then the last component followed if it is a
 * link, which may dangle: the file it names is what gets created, the link kept. A loop is
 * refused, and so is a link to an open file descriptor (`/dev/stdout`, `/proc/self/fd/N`): even
 * when it is a regular file, renaming a new file over its name leaves the descriptor's reader with
 * nothing. No step folds `..` as text.
 */
async function resolveDestination(destination: string): Promise<string> {
  let current = destination.startsWith('/') ? destination : `${process.cwd()}/${destination}`;
  for (let links = 0; ; ) {
    // The directory part through the kernel's own resolution; missing, it is said later.
    const directory = await realpath(path.dirname(current)).catch(() => undefined);
    if (directory === undefined) return path.resolve(current);
    const base = path.basename(current);
    const candidate = base === '..' || base === '.' ? path.resolve(directory, base) : path.join(directory, base);
    if (FD_LINK.test(`${candidate}/`)) {
      throw targetError(`${destination} is a link to an open file descriptor (${candidate}): give a file name as the destination`);
    }
    const target = await readlink(candidate).catch(() => undefined);
    if (target === undefined) return candidate;
    if (++links > MAX_LINKS) {
      throw targetError(`${destination}: too many levels of symbolic links (a loop?): give the file itself as the destination`);
    }
    if (target.endsWith('/')) throw targetError(`${destination} is a link to ${target}, a directory path: give a file name for the disk image`);
    // Kept as text, unfolded: the next turn resolves its directory part as the kernel would.
    current = target.startsWith('/') ? target : `${directory}/${target}`;
  }
}

/** Paths that name an open file descriptor (…/fd/N of a process or one of its threads). */
const FD_LINK = /^(\/proc\/[^/]+(\/task\/[^/]+)?\/fd\/|\/dev\/fd\/)/;
