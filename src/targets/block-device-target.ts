import { open, stat, type FileHandle } from 'node:fs/promises';
import type { DiskTarget } from './disk-target.js';
import { blockDeviceSize } from '../util/block-device-size.js';
import { targetFailure } from './target-errors.js';
import { EarlyFlush } from './early-flush.js';

const ZEROS = Buffer.alloc(1 << 20);

/**
 * A block device (a PVC in block mode, a loop device). Its old contents are unknown, so zero
 * runs are written as zeros, never skipped. Block volumes are never resized.
 */
export class BlockDeviceTarget implements DiskTarget {
  readonly kind = 'block' as const;

  private readonly earlyFlush: EarlyFlush;

  private constructor(
    readonly path: string,
    readonly capacity: number,
    private handle: FileHandle | undefined,
  ) {
    this.earlyFlush = new EarlyFlush(() => handle!.datasync());
  }

  static async open(devicePath: string): Promise<BlockDeviceTarget> {
    try {
      const info = await stat(devicePath);
      const size = await blockDeviceSize(devicePath, info.rdev);
      const handle = await open(devicePath, 'r+');
      return new BlockDeviceTarget(devicePath, size, handle);
    } catch (err) {
      throw targetFailure(err, devicePath);
    }
  }

  async write(offset: number, data: Buffer): Promise<number> {
    await this.writeAll(data, offset);
    return data.length;
  }

  async zero(offset: number, length: number): Promise<number> {
    for (let done = 0; done < length; done += ZEROS.length) {
      await this.writeAll(ZEROS.subarray(0, Math.min(ZEROS.length, length - done)), offset + done);
    }
    return length;
  }

  private async writeAll(data: Buffer, offset: number): Promise<void> {
    let written = 0;
    while (written < data.length) {
      const result = await this.handle!.write(data, written, data.length - written, offset + written).catch((err) => {
        throw targetFailure(err, this.path);
      });
      written += result.bytesWritten;
    }
    this.earlyFlush.wrote(data.length);
  }

  async finish(): Promise<{ preallocationApplied: boolean; size: number }> {
    try {
      await this.earlyFlush.settle();
      await this.handle!.sync();
      await this.handle!.close();
      this.handle = undefined;
    } catch (err) {
      throw targetFailure(err, this.path);
    }
    // Every byte of a block device is allocated: preallocation is inherent, as in CDI.
    return { preallocationApplied: false, size: this.capacity };
  }

  async abort(): Promise<void> {
    await this.handle?.close().catch(() => {});
    this.handle = undefined;
  }
}
