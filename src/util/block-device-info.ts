/** What sysfs (or blockdev) says of a block device: its size, whether it is read-only. */
import { readFile } from 'node:fs/promises';
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

/** The device's directory in sysfs, by its major:minor (Linux encodes dev_t as glibc's gnu_dev_major/minor do). */
function sysfsDirectory(rdev: number): string {
  const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff);
  return `/sys/dev/block/${major}:${minor}`;
}
