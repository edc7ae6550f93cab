import { targetError } from '../errors.js';
import { fallocate } from './fallocate.js';

/**
 * Allocates every block of [0, size) without changing its contents. Node has no fallocate(2),
 * so this uses util-linux's `fallocate` (mode 0 keeps data and fills holes with allocated zeros).
 * `--posix` is posix_fallocate(3), as qemu-img's preallocation=falloc uses: where the file
 * system has no fallocate (ext2/ext3 without extents, NFSv3, some FUSE and CSI file systems),
 * glibc allocates the holes by writing them instead of failing the import.
 * `file` is what gets allocated (maybe a temporary name); `shownAs` is what messages call it.
 */
export async function preallocate(file: string, size: number, shownAs = file): Promise<void> {
  if (size === 0) return;
  try {
    await fallocate(['--posix', '--offset', '0', '--length', String(size), file]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw targetError(`cannot preallocate ${shownAs}: the fallocate program (util-linux) is not installed; install it or import without preallocation`, err);
    }
    const detail = (err as { stderr?: string }).stderr?.trim().replace(/^fallocate: /, '') || (err as Error).message;
    throw targetError(`cannot preallocate ${shownAs}: ${detail}`, err);
  }
}
