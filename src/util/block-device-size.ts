import { readFile } from 'node:fs/promises';
import { runProgram } from './run-program.js';

/**
 * Size of a block device in bytes. fs.stat reports 0 for devices; sysfs has the size in
 * 512-byte sectors under the device's major:minor.
 */
export async function blockDeviceSize(path: string, rdev: number): Promise<number> {
  // Linux encodes dev_t as in glibc's gnu_dev_major/minor.
  const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff);
  try {
    const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    return Number(sectors.trim()) * 512;
  } catch {
    // No sysfs (some containers): ask the device itself.
    return Number((await runProgram('blockdev', ['--getsize64', path])).trim());
  }
}
