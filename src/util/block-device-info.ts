/** What sysfs (or blockdev) says of a block device: its size, whether it is read-only. */
import { readFile, realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { runProgram } from './run-program.js';

/**
 * Size of a block device in bytes. fs.stat reports 0 for devices; sysfs has the size in
 * 512-byte sectors under the device's major:minor.
 */
export async function blockDeviceSize(path: string, rdev: number): Promise<number> {
  try {
    const sectors = await readFile(`${sysfsDirectory(rdev)}/size`, 'utf8');
    return Number(sectors.trim()) * 512;
  } catch {
    // No sysfs (some containers): ask the device itself.
    return Number((await runProgram('blockdev', ['--getsize64', path])).trim());
  }
}

/**
 * Whether the kernel holds the device read-only (`losetup -r`, `blockdev --setro`, a read-only
 * attachment): it opens for writing, and only the writes fail, with EPERM. False when unknown.
 */
export async function blockDeviceReadOnly(path: string, rdev: number): Promise<boolean> {
  try {
    return (await readFile(`${sysfsDirectory(rdev)}/ro`, 'utf8')).trim() === '1';
  } catch {
    try {
      return (await runProgram('blockdev', ['--getro', path])).trim() === '1';
    } catch {
      return false;
    }
  }
}

/**
 * How the block device `rdev` shares bytes with a source (a block device or a regular file, by its
 * stat), said of the device: "the source device itself", a partition of it or the disk that holds
 * it, a loop device over the source file, or stacked over the same bytes (loop devices over one
 * file or device, at overlapping offsets, however deep); undefined when they share nothing that
 * sysfs shows (device-mapper stacks are not followed).
 */
export async function blockDeviceOverlap(rdev: number, source: { rdev: number; dev: number; ino: number; isBlockDevice(): boolean }): Promise<string | undefined> {
  const [mine, theirs] = await Promise.all([storageChain(rdev), source.isBlockDevice() ? storageChain(source.rdev) : [{ id: fileId(source) } as StorageLevel]]);
  if (!chainsOverlap(mine, theirs)) return undefined;
  if (source.isBlockDevice()) {
    if (source.rdev === rdev) return 'the source device itself';
    if (theirs.length === mine.length + 1 && theirs[1]!.id === mine[0]!.id && theirs[0]!.partition) return 'the disk that holds the source device';
    if (mine.length === theirs.length + 1 && mine[1]!.id === theirs[0]!.id && mine[0]!.partition) return 'a partition of the source device';
  } else if (mine.length === 2 && !mine[0]!.partition) {
    return 'a loop device over the source file';
  } else if (mine.length === 3 && mine[0]!.partition && !mine[1]!.partition) {
    return 'a partition of a loop device over the source file';
  }
  return 'a device over the same bytes as the source (loop devices or partitions stacked on one file or disk)';
}

/** One level of a block device's storage: what it is, and which bytes of the next level down it holds. */
interface StorageLevel {
  /** The device's directory in sysfs (its real path), or a file's dev:ino. */
  id: string;
  /** Bytes [start, end) of the level below (none for the bottom one). */
  start?: number;
  end?: number;
  /** A partition of the level below (rather than a loop device over it). */
  partition?: boolean;
}

const fileId = (file: { dev: number; ino: number }) => `file ${file.dev}:${file.ino}`;

/** The device `rdev` down to what holds its bytes (see chainFrom). */
async function storageChain(rdev: number): Promise<StorageLevel[]> {
  const directory = await realpath(sysfsDirectory(rdev)).catch(() => undefined);
  return directory === undefined ? [{ id: `device ${rdev}` }] : chainFrom(directory, 0);
}

/**
 * A device, by its sysfs directory, down to what holds its bytes: a partition's disk (the directory
 * above), a loop device's backing file or device (followed down in turn), ending at a disk or a
 * file. Unknown levels end the chain.
 */
async function chainFrom(directory: string, depth: number): Promise<StorageLevel[]> {
  const level: StorageLevel = { id: directory };
  if (depth > 16) return [level];
  const text = (file: string) => readFile(`${directory}/${file}`, 'utf8').then((value) => value.trim(), () => undefined);
  const number = async (file: string) => Number(await text(file)) || 0;
  if ((await text('partition')) !== undefined) {
    level.start = (await number('start')) * 512;
    level.end = level.start + (await number('size')) * 512;
    level.partition = true;
    return [level, ...(await chainFrom(dirname(directory), depth + 1))];
  }
  const backing = await text('loop/backing_file');
  if (backing === undefined) return [level];
  const [offset, limit] = await Promise.all([number('loop/offset'), number('loop/sizelimit')]);
  level.start = offset;
  level.end = limit > 0 ? offset + limit : Infinity;
  const below = await stat(backing).catch(() => undefined);
  if (below === undefined) return [level, { id: `missing ${backing}` }];
  if (!below.isBlockDevice()) return [level, { id: fileId(below) }];
  const belowDirectory = await realpath(sysfsDirectory(below.rdev)).catch(() => undefined);
  return [level, ...(belowDirectory === undefined ? [{ id: `device ${below.rdev}` }] : await chainFrom(belowDirectory, depth + 1))];
}

/**
 * Whether two chains reach the same bytes: the same bottom, and from there up, at each level
 * either the same thing or ranges of the level below that meet; a chain that ends first holds
 * the other whole.
 */
function chainsOverlap(a: StorageLevel[], b: StorageLevel[]): boolean {
  const up = (chain: StorageLevel[]) => [...chain].reverse();
  const [x, y] = [up(a), up(b)];
  if (x[0]!.id !== y[0]!.id) return false;
  for (let i = 1; i < x.length && i < y.length; i++) {
    if (x[i]!.id === y[i]!.id) continue;
    return x[i]!.start! < y[i]!.end! && y[i]!.start! < x[i]!.end!;
  }
  return true;
}

/** The device's directory in sysfs, by its major:minor (Linux encodes dev_t as glibc's gnu_dev_major/minor do). */
function sysfsDirectory(rdev: number): string {
  const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff);
  return `/sys/dev/block/${major}:${minor}`;
}
