import { open } from 'node:fs/promises';

/** Makes a rename or file creation in `dir` durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  // A directory the user may write but not read (mode 0333) cannot be opened to be synced; the
  // rename into it is done by then, and failing now would report a disk that is in place as not.
  const handle = await open(dir, 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EACCES' || err.code === 'EPERM') return undefined;
    throw err;
  });
  if (!handle) return;
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
