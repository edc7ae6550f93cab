import { open, readlink, realpath, rename, unlink, chmod, type FileHandle } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { debuglog } from 'node:util';
import path from 'node:path';
import type { DiskTarget } from './disk-target.js';
import { dataRuns } from './zero-runs.js';
import { preallocate } from './preallocate.js';
import { targetFailure } from './target-errors.js';
import { targetError } from '../errors.js';
import { formatBytes } from '../util/quantity.js';
import { fsyncDirectory } from './fsync-directory.js';
import { EarlyFlush } from './early-flush.js';
import { cleanUpOnForcedExit } from '../util/forced-exit.js';
import { tryLock } from '../util/fs-ext.js';
import { removeStaleTemporaries, temporaryName } from './temporary-names.js';
import { FileCopier, FileCopyError, writeDataNatively } from '../util/file-copy.js';
import type { LocalFile } from '../extents.js';

const debug = debuglog('cdi-importer');

/**
 * The most one write is given, as in the native writeData (native/file-copy/file-copy.c, MAX_DECODED_PWRITE):
 * the page cache takes larger writes in large folios, which a VM that returns free memory to its
 * host must first get back from it, at times 5-10 times slower.
 */
const MAX_WRITE = 128 << 10;

export interface SparseFileTargetOptions {
  /** Final path of the image. */
  path: string;
  /** Bytes the image may occupy (SPEC §7 usable space). */
  capacity: number;
  /** Write under a temporary name in the same directory and rename at the end (CLI). */
  atomic: boolean;
  /** Mode as qemu-img and cp give it (0666 less the umask; a replaced file's own mode) instead of CDI's 0660. */
  localMode: boolean;
  /** The file this one replaces, if any: its permission bits and owner are kept with localMode. */
  replaced?: { mode: number; uid: number; gid: number };
  /** fsync the file (and the directory after a rename) before finishing. */
  sync: boolean;
  preallocation: boolean;
}

/**
 * A new sparse file: all-zero 4 KiB blocks are never written, so they stay holes, as with
 * `qemu-img convert -S 4k`. The file is created fresh (truncated), mode 0660 (CDI's) or as a
 * local tool creates files, fsync'd at the end unless the caller opts out.
 */
export class SparseFileTarget implements DiskTarget {
  readonly kind = 'file' as const;
  readonly path: string;
  readonly capacity: number;
  private readonly writePath: string;
  private handle?: FileHandle;
  /** Where the temporary file was when its handle closed, if its directory had been moved meanwhile. */
  private movedTo?: string;
  private highWater = 0;
  private finished = false;
  private earlyFlush?: EarlyFlush;
  /** Copies copyFrom() hands to native code, a batch at a time (made on the first copyFrom). */
  private copier?: FileCopier;
  /** Native writes and copies in flight on the descriptor (useDescriptor), settled or not. */
  private readonly nativeJobs = new Set<Promise<void>>();
  /** Bytes copyFrom() was given (NODE_DEBUG=cdi-importer reports them). */
  private copiedBytes = 0;
  /** Forgets the forced-exit removal of the temporary file once it is renamed or removed. */
  private forgetTemporary = () => {};

  private constructor(private readonly options: SparseFileTargetOptions) {
    this.path = options.path;
    this.capacity = options.capacity;
    this.writePath = options.atomic ? temporaryName(options.path, 'partial') : options.path;
  }

  static async create(options: SparseFileTargetOptions): Promise<SparseFileTarget> {
    const target = new SparseFileTarget(options);
    try {
      target.handle = await open(target.writePath, 'w', options.localMode ? 0o666 : 0o660).catch((err: NodeJS.ErrnoException) => {
        // The file itself may be writable (qemu-img would write it in place); the directory is not.
        if (options.atomic && (err.code === 'EACCES' || err.code === 'EPERM')) {
          const directory = path.dirname(options.path);
          throw targetError(
            `permission denied creating a file in ${directory}: the disk is written beside ${path.basename(options.path)} under a temporary name and renamed into place, so the directory must be writable too`,
            err,
          );
        }
        throw err;
      });
      if (options.atomic) {
        target.forgetTemporary = cleanUpOnForcedExit(() => unlinkSync(target.writePath));
        // Held until the process ends: a later import sees this partial file is not a dead one's.
        await tryLock(target.handle.fd);
      }
      if (!options.localMode) {
        // The umask may have cleared group bits; CDI's disk.img is 0660.
        await chmod(target.writePath, 0o660);
      } else if (options.atomic && options.replaced) {
        // A file replaced by rename would lose its mode and owner; qemu-img convert truncates it and
        // keeps both (`sudo cdi-importer convert … vm.img` must not leave the owner unable to read it).
        await chmod(target.writePath, options.replaced.mode);
        await keepOwner(target.handle, options.replaced);
      }
      const handle = target.handle;
      if (options.sync) target.earlyFlush = new EarlyFlush(() => handle.datasync());
    } catch (err) {
      throw targetFailure(err, options.path);
    }
    return target;
  }

  async write(offset: number, data: Buffer): Promise<number> {
    const handle = this.handle!;
    const nativeWrite = writeDataNatively(handle.fd, data, offset);
    const total = nativeWrite
      ? await this.useDescriptor(nativeWrite).catch((err) => {
          throw targetFailure(err, this.path);
        })
      : await this.writeRuns(handle, offset, data);
    this.highWater = Math.max(this.highWater, offset + data.length);
    this.earlyFlush?.wrote(data.length);
    return total;
  }

  /** write() without the native module: each run of non-zero blocks through Node's fs. */
  private async writeRuns(handle: FileHandle, offset: number, data: Buffer): Promise<number> {
    let total = 0;
    for (const run of dataRuns(data, offset)) {
      let written = 0;
      const length = run.end - run.start;
      while (written < length) {
        const result = await handle
          .write(data, run.start + written, Math.min(MAX_WRITE, length - written), offset + run.start + written)
          .catch((err) => {
            throw targetFailure(err, this.path);
          });
        written += result.bytesWritten;
      }
      total += length;
    }
    return total;
  }

  /**
   * Tracks a native job on the descriptor: the pool thread that runs it is unknown to Node, so
   * abort() and finish() wait for these before closing (a closed number can be reused by the next open).
   */
  private useDescriptor<T>(job: Promise<T>): Promise<T> {
    const settled = job.then(
      () => {},
      () => {},
    );
    this.nativeJobs.add(settled);
    void settled.then(() => this.nativeJobs.delete(settled));
    return job;
  }

  async copyFrom(file: LocalFile, position: number, offset: number, length: number): Promise<number> {
    this.copier ??= new FileCopier(this.handle!.fd);
    const written = await this.useDescriptor(this.copier.copy(file.fd, position, offset, length)).catch((err: unknown) => {
      if (err instanceof FileCopyError) throw err.side === 'read' ? file.readFailure(err.cause) : targetFailure(err.cause, this.path);
      throw err;
    });
    this.highWater = Math.max(this.highWater, offset + length);
    this.earlyFlush?.wrote(length);
    this.copiedBytes += length;
    return written;
  }

  async zero(offset: number, length: number): Promise<number> {
    // A fresh file reads zeros everywhere nothing was written: nothing to do but remember the size.
    this.highWater = Math.max(this.highWater, offset + length);
    return 0;
  }

  async finish(size: number): Promise<{ preallocationApplied: boolean; size: number }> {
    const handle = this.handle!;
    const finalSize = Math.max(size, this.highWater);
    try {
      await Promise.all(this.nativeJobs);
      await this.earlyFlush?.settle();
      await handle.truncate(finalSize);
      if (this.options.preallocation) await preallocate(this.writePath, finalSize, this.path);
      if (this.options.sync) await handle.sync();
      this.movedTo = await movedTo(handle, this.writePath);
      await handle.close();
      this.handle = undefined;
      if (this.movedTo !== undefined) {
        throw targetError(`${path.dirname(this.writePath)} was moved or replaced during the import, so the image was not put in place: import it again`);
      }
      if (this.writePath !== this.path) {
        if (this.options.sync) await rename(this.writePath, this.path);
        else await this.replaceUnsynced();
        this.forgetTemporary();
        await removeStaleTemporaries(this.path, this.writePath);
      }
      if (this.options.sync) await fsyncDirectory(path.dirname(this.path));
      debug('%s: %d bytes copied from the source file by the native copy', this.path, this.copiedBytes);
    } catch (err) {
      throw targetFailure(err, this.path);
    }
    this.finished = true;
    return { preallocationApplied: this.options.preallocation, size: finalSize };
  }

  /**
   * Without sync, renaming over an existing file would make ext4 write the new one out first
   * (auto_da_alloc), as costly as the fsync nobody asked for (2 GiB qcow2 over an earlier output:
   * 1.6 s against 0.6 s). So the old file is renamed aside, the new one takes its name, and the
   * old one goes last: at no moment is a partial disk at the path, and if the process dies
   * between the two renames (microseconds), the old disk is still there under `.NAME.old-…`.
   */
  private async replaceUnsynced(): Promise<void> {
    const aside = temporaryName(this.path, 'old');
    const hadOld = await rename(this.path, aside).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false;
        throw err;
      },
    );
    try {
      await rename(this.writePath, this.path);
    } catch (err) {
      // The new disk could not take the name (EIO, ENOSPC on the directory): the old one goes back,
      // as replaced only by a finished disk promises.
      if (hadOld) await rename(aside, this.path).catch(() => {});
      throw err;
    }
    if (hadOld) await unlink(aside).catch(() => {});
  }

  async checkSize(size: number): Promise<void> {
    try {
      // Left at that size (a hole; finish() sets the final one, never smaller): truncating back
      // to 0 would make ext4 (auto_da_alloc, "replace via truncate") write the whole file out
      // at close, as an fsync would: 0.38 -> 1.07 s for the 2 GiB qcow2 benchmark.
      await this.handle!.truncate(size);
      this.highWater = Math.max(this.highWater, size);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EFBIG') {
        throw targetError(
          `${this.path} cannot be ${formatBytes(size)}: that is larger than the largest file its file system allows (EFBIG); write it to a block device or to a file system that allows larger files (XFS), or raise the shell's file-size limit if one is set (ulimit -f)`,
          err,
        );
      }
      throw targetFailure(err, this.path);
    }
  }

  async abort(): Promise<void> {
    if (this.finished) return;
    // The batch being copied is waited for (it uses the descriptor); the ones queued behind it are dropped.
    this.copier?.dropQueued(new Error('the import stopped before this copy started'));
    await Promise.all(this.nativeJobs);
    // Where the file is now: its directory may have been moved (mv out out.old) while we wrote.
    const where = (this.handle ? await movedTo(this.handle, this.writePath) : this.movedTo) ?? this.writePath;
    await this.handle?.close().catch(() => {});
    this.handle = undefined;
    await unlink(where).catch(() => {});
    this.forgetTemporary();
  }
}

/**
 * Gives the new file the replaced one's owner, as far as we may: root can; anyone can keep a group
 * they belong to; otherwise the file is ours, as a copy made by the user would be.
 */
async function keepOwner(handle: FileHandle, owner: { uid: number; gid: number }): Promise<void> {
  if (owner.uid === process.getuid?.() && owner.gid === process.getgid?.()) return;
  await handle.chown(owner.uid, owner.gid).catch(() => handle.chown(-1, owner.gid).catch(() => {}));
}

/**
 * Where an open temporary file is now, when that is no longer `expected` (its directory was moved,
 * `mv out out.old`, while we wrote): the kernel's own path for it (/proc/self/fd). Undefined when it
 * is still there, or when that cannot be told (no /proc, the file already removed).
 */
async function movedTo(handle: FileHandle, expected: string): Promise<string | undefined> {
  const now = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => undefined);
  if (now === undefined || path.basename(now) !== path.basename(expected)) return undefined;
  // The directory as the kernel resolves it now (through links): the same place, or another.
  const directory = await realpath(path.dirname(expected)).catch(() => undefined);
  return directory !== undefined && path.join(directory, path.basename(expected)) === now ? undefined : now;
}
