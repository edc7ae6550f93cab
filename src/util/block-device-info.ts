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
 * it, or a loop device over the source file; undefined when they share nothing that sysfs shows
 * (device-mapper stacks are not followed).
 */
export async function blockDeviceOverlap(rdev: number, other: { rdev: number; dev: number; ino: number; isBlockDevice(): boolean }): Promise<string | undefined> {
  if (other.isBlockDevice()) {
    if (other.rdev === rdev) return 'the source device itself';
    const [mine, theirs] = await Promise.all([realpath(sysfsDirectory(rdev)).catch(() => undefined), realpath(sysfsDirectory(other.rdev)).catch(() => undefined)]);
    if (mine === undefined || theirs === undefined) return undefined;
    if (theirs.startsWith(`${mine}/`)) return 'the disk that holds the source device';
    if (mine.startsWith(`${theirs}/`)) return 'a partition of the source device';
    return undefined;
  }
  // A loop device (or a partition of one) over the file: its backing file is that file.
  const directory = await realpath(sysfsDirectory(rdev)).catch(() => undefined);
  if (directory === undefined) return undefined;
  for (const candidate of [directory, dirname(directory)]) {
    const backing = await readFile(`${candidate}/loop/backing_file`, 'utf8').catch(() => undefined);
    if (backing === undefined) continue;
    const file = await stat(backing.trim()).catch(() => undefined);
    return file && file.dev === other.dev && file.ino === other.ino ? 'a loop device over the source file' : undefined;
  }
  return undefined;
}

/** The device's directory in sysfs, by its major:minor (Linux encodes dev_t as glibc's gnu_dev_major/minor do). */
function sysfsDirectory(rdev: number): string {
  const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff);
  return `/sys/dev/block/${major}:${minor}`;
}
