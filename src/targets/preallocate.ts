import { stat } from 'node:fs/promises';
import { targetError } from '../errors.js';
import { fallocate } from './fallocate.js';
import { freeSpace } from './usable-space.js';

/**
 * Allocates every block of [0, size) without changing its contents, as qemu-img's
 * preallocation=falloc does with posix_fallocate(3). Node has no fallocate(2), so this runs
 * util-linux's `fallocate` (mode 0 keeps data and fills holes with allocated zeros). Where the
 * file system has no fallocate (ext2/ext3 without extents, NFSv3, some FUSE and CSI file systems),
 * `--posix` has glibc allocate the holes by writing them instead of failing the import.
 * `file` is what gets allocated (maybe a temporary name); `shownAs` is what messages call it.
 */
export async function preallocate(file: string, size: number, shownAs = file): Promise<void> {
  if (size === 0) return;
  try {
    await allocate(file, size);
  } catch (err) {
    throw preallocationError(err, shownAs);
  }
}

async function allocate(file: string, size: number): Promise<void> {
  const range = ['--offset', '0', '--length', String(size), file];
  try {
    await fallocate(range);
  } catch (err) {
    if (!/Operation not supported/.test(programError(err))) throw err;
    await fallocate(['--posix', ...range]);
    await checkWrittenAllocation(file, size);
  }
}

/**
 * util-linux's `fallocate --posix` (2.38 here) exits 0 whatever posix_fallocate returned: it tests
 * the result for < 0, and posix_fallocate returns an error number. A disk that filled up shows as
 * holes left while the file system has no room for them. A file system that stores written zeros
 * as holes (ZFS with compression) leaves holes too, but with room to spare, and passes.
 */
async function checkWrittenAllocation(file: string, size: number): Promise<void> {
  const missing = size - Number((await stat(file)).blocks) * 512;
  if (missing <= 0) return;
  const free = await freeSpace(file);
  if (free !== undefined && free < missing) {
    throw Object.assign(new Error('No space left on device'), { code: 'ENOSPC' });
  }
}

function programError(err: unknown): string {
  return (err as { stderr?: string }).stderr?.trim().replace(/^fallocate: /, '') || (err as Error).message;
}

function preallocationError(err: unknown, shownAs: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const detail = programError(err);
  if (code === 'ENOENT') {
    return targetError(`cannot preallocate ${shownAs}: the fallocate program (util-linux) is not installed; install it or import without preallocation`, err);
  }
  if (code === 'ENOSPC' || /No space left on device/.test(detail)) {
    return targetError(`no space left on the device to preallocate ${shownAs}: free some space, use a larger volume, or import without preallocation`, err);
  }
  if (/Disk quota exceeded/.test(detail)) {
    return targetError(`disk quota exceeded while preallocating ${shownAs}: raise the quota or import without preallocation`, err);
  }
  return targetError(`cannot preallocate ${shownAs}: ${detail}`, err);
}
