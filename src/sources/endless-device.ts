import { badInput } from '../errors.js';

/** The kernel's memory devices (major 1) that never end, by minor number. */
const ENDLESS_DEVICES: Record<number, string> = { 5: 'zeros', 7: 'zeros', 8: 'random bytes', 9: 'random bytes' };

/**
 * /dev/zero, /dev/urandom and the like read forever: streamed like a pipe, the import would run
 * until the disk filled (qemu-img sees a 0-byte raw image in them). A terminal is no image either.
 * `what` is the source as messages name it.
 */
export function refuseEndlessDevice(what: string, rdev: number): void {
  const major = Math.floor(rdev / 256) & 0xfff;
  const endless = major === 1 ? ENDLESS_DEVICES[rdev & 0xff] : undefined;
  if (endless) throw badInput(`${what} is a device that reads as endless ${endless}, not a disk image: give the image's file`);
  // 4: virtual consoles and serial ports, 5: /dev/tty and /dev/console, 136-143: pseudo-terminals.
  if (major === 4 || major === 5 || (major >= 136 && major <= 143)) {
    throw badInput(`${what} is a terminal, not a disk image: give the image's file, or pipe it in`);
  }
}
