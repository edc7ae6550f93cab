import { open } from 'node:fs/promises';

/** Makes a rename or file creation in `dir` durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch (err) {
    // Some file systems refuse fsync on directories (EINVAL, ENOTSUP); the data itself is already
    // synced. Any other failure (EIO) means the rename may not last: said, not reported as done.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EBADF') throw err;
  } finally {
    await handle.close();
  }
}
