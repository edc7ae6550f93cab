import { open } from 'node:fs/promises';

/** Makes a rename or file creation in `dir` durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on directories; the data itself is already synced.
  } finally {
    await handle.close();
  }
}
