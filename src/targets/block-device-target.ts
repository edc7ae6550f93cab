import { constants } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { DiskTarget } from './disk-target.js';
import { blockDeviceReadOnly, blockDeviceSize } from '../util/block-device-info.js';
import { targetError } from '../errors.js';
import { targetFailure } from './target-errors.js';
import { EarlyFlush } from './early-flush.js';
import { dataRuns, HOLE_BLOCK } from './zero-runs.js';
import { fallocate } from './fallocate.js';

const ZEROS = Buffer.alloc(1 << 20);
/** The first window zeroed ahead of an image of unknown size (see zeroThrough). */
const ZERO_WINDOW = 64 << 20;

/**
 * A block device (a PVC in block mode, a loop device). Its old contents are unknown, so what the
 * image does not fill must be made to read as zeros: cheaply up front when the device can (see
 * zeroAhead), by writing zeros otherwise. Block volumes are never resized.
 */
export class BlockDeviceTarget implements DiskTarget {
  readonly kind = 'block' as const;

  /** Absent without sync: the page cache writes the device out when it will, as after qemu-img convert. */
  private readonly earlyFlush: EarlyFlush | undefined;
  /** [0, zeroed) already reads as zeros: zero runs there need no writing. */
  private zeroed = 0;
  /**
   * An image of unknown size (a raw stream from gzip, zstd, stdin) is zeroed ahead as it is
   * written instead: windows that double, each made to read as zeros before the first write into
   * it. Off once zeroAhead() had the whole size, or a device refused, or preallocation is asked.
   */
  private zeroAsWritten: boolean;
  /** The end of the last window asked for; the windows are made in order, one after another. */
  private windowEnd = 0;
  private windows: Promise<void> = Promise.resolve();

  private constructor(
    readonly path: string,
    readonly capacity: number,
    private handle: FileHandle | undefined,
    /** Preallocation asked: every block gets written (allocated), zeros included. */
    private readonly preallocation: boolean,
    private readonly sync: boolean,
  ) {
    this.earlyFlush = sync ? new EarlyFlush(() => handle!.datasync()) : undefined;
    this.zeroAsWritten = !preallocation;
  }

  static async open(devicePath: string, options: { preallocation?: boolean; sync?: boolean } = {}): Promise<BlockDeviceTarget> {
    try {
      const info = await stat(devicePath);
      const size = await blockDeviceSize(devicePath, info.rdev);
      if (await blockDeviceReadOnly(devicePath, info.rdev)) {
        throw targetError(`${devicePath} is a read-only device: make it writable (blockdev --setrw; a loop device attached without -r; a volume attached read-write) or import to another device`);
      }
      // O_EXCL on a block device claims it: Linux answers EBUSY while it is mounted or another
      // program (another import, mkfs) holds it so, instead of letting two writers mix.
      const handle = await open(devicePath, constants.O_RDWR | constants.O_EXCL);
      return new BlockDeviceTarget(devicePath, size, handle, options.preallocation ?? false, options.sync ?? true);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EBUSY') {
        throw targetError(`${devicePath} is in use (mounted, or opened by another program such as another import): unmount it or wait for the other writer`, err);
      }
      throw targetFailure(err, devicePath);
    }
  }

  /**
   * Makes [0, length) read as zeros without writing them, as qemu-img convert (CDI's converter)
   * does before it copies: a write-zeroes request that may unmap and must not fall back to
   * writing (fallocate's punch-hole on a block device; Node has no fallocate(2), util-linux's
   * `fallocate` does it). Thin devices (LVM-thin, Ceph RBD, loop devices on sparse files) then
   * hold only the image's data instead of every zero. A device that cannot do it cheaply refuses,
   * and its zeros are written as before.
   */
  async zeroAhead(length: number): Promise<void> {
    this.zeroAsWritten = false;
    const aligned = Math.floor(length / HOLE_BLOCK) * HOLE_BLOCK;
    if (aligned === 0 || this.preallocation) return;
    if (await this.punch(0, aligned)) this.zeroed = aligned;
  }

  /** Makes [from, to) read as zeros without writing them; false if the device cannot. */
  private async punch(from: number, to: number): Promise<boolean> {
    try {
      await fallocate(['--punch-hole', '--offset', String(from), '--length', String(to - from), this.path]);
      return true;
    } catch {
      // EOPNOTSUPP (no write-zeroes support), an old kernel, no util-linux: zeros get written.
      return false;
    }
  }

  /**
   * Before a write that ends at `end` (images of unknown size): the window it falls in reads as
   * zeros first. Windows start at 64 MiB and double (a few `fallocate` runs for any size); the
   * last may run past the image's end, up to the device's.
   */
  private async zeroThrough(end: number): Promise<void> {
    const limit = Math.floor(this.capacity / HOLE_BLOCK) * HOLE_BLOCK;
    if (!this.zeroAsWritten || end <= this.zeroed) return;
    while (this.zeroAsWritten && end > this.windowEnd && this.windowEnd < limit) {
      const from = this.windowEnd;
      const window = Math.min(limit, from + Math.max(ZERO_WINDOW, from));
      this.windowEnd = window;
      this.windows = this.windows.then(async () => {
        if (!this.zeroAsWritten) return;
        if (await this.punch(from, window)) this.zeroed = window;
        else this.zeroAsWritten = false;
      });
    }
    await this.windows;
  }

  async write(offset: number, data: Buffer): Promise<number> {
    await this.zeroThrough(offset + data.length);
    if (offset + data.length > this.zeroed) {
      await this.writeAll(data, offset);
      return data.length;
    }
    let total = 0;
    for (const piece of dataRuns(data, offset)) {
      await this.writeAll(data.subarray(piece.start, piece.end), offset + piece.start);
      total += piece.end - piece.start;
    }
    return total;
  }

  async zero(offset: number, length: number): Promise<number> {
    await this.zeroThrough(offset + length);
    const from = Math.max(offset, this.zeroed);
    for (let at = from; at < offset + length; at += ZEROS.length) {
      await this.writeAll(ZEROS.subarray(0, Math.min(ZEROS.length, offset + length - at)), at);
    }
    return Math.max(0, offset + length - from);
  }

  private async writeAll(data: Buffer, offset: number): Promise<void> {
    let written = 0;
    while (written < data.length) {
      const result = await this.handle!.write(data, written, data.length - written, offset + written).catch((err) => {
        throw targetFailure(err, this.path);
      });
      written += result.bytesWritten;
    }
    this.earlyFlush?.wrote(data.length);
  }

  async finish(): Promise<{ preallocationApplied: boolean; size: number }> {
    try {
      await this.earlyFlush?.settle();
      if (this.sync) await this.handle!.sync();
      await this.handle!.close();
      this.handle = undefined;
    } catch (err) {
      throw targetFailure(err, this.path);
    }
    // Block volumes are not resized; CDI reports no preallocation for them either.
    return { preallocationApplied: false, size: this.capacity };
  }

  async abort(): Promise<void> {
    await this.handle?.close().catch(() => {});
    this.handle = undefined;
  }
}
