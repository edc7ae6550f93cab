import { statfs } from 'node:fs/promises';

const MiB = 1 << 20;

/**
 * SPEC §7: the bytes an image may occupy on a filesystem volume,
 * roundDown(ceil(available / (1 + overhead)), 1 MiB), where available is the smaller of the
 * filesystem's free space and the requested size.
 */
export function usableSpace(available: number, overhead: number): number {
  const withOverhead = Math.ceil(available / (1 + overhead));
  return Math.floor(withOverhead / MiB) * MiB;
}

/**
 * Free space for an unprivileged writer (statfs bavail × bsize) of the filesystem holding `dir`;
 * undefined for one that reports no size at all (0 blocks: a tmpfs mounted with size=0, which has
 * no limit, or ramfs), where a write fails only when memory runs out, as on a full disk.
 */
export async function freeSpace(dir: string): Promise<number | undefined> {
  const info = await statfs(dir);
  if (Number(info.blocks) === 0) return undefined;
  return Number(info.bavail) * Number(info.bsize);
}
