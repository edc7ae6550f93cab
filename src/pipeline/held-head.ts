import type { Extent } from '../extents.js';
import type { DiskTarget } from '../targets/disk-target.js';

/** The part of the disk written last: partition tables (MBR, GPT) and file-system superblocks live here. */
export const HEAD_BYTES = 1 << 20;

/**
 * Holds back the disk's first MiB until everything else is written (and the checksum verified).
 * An import that is interrupted, however hard (kill -9, a lost node), then leaves a disk whose
 * start reads as zeros: no partition table or superblock, nothing that mounts or boots looking
 * complete while files inside are wrong. Costs one MiB of memory and one write at the end.
 */
export class HeldHead {
  private parts: { offset: number; data: Buffer }[] = [];

  /** Keeps a copy of `extent`'s bytes in the head; returns what remains to write now. */
  take(extent: Extent): Extent | undefined {
    if (!extent.data || extent.offset >= HEAD_BYTES) return extent;
    const cut = Math.min(extent.length, HEAD_BYTES - extent.offset);
    // A copy: the extent's buffer goes back to its pool once the rest is written.
    this.parts.push({ offset: extent.offset, data: Buffer.from(extent.data.subarray(0, cut)) });
    if (cut === extent.length) {
      extent.release?.();
      return undefined;
    }
    return { offset: HEAD_BYTES, length: extent.length - cut, data: extent.data.subarray(cut), release: extent.release };
  }

  /** Writes the held bytes; resolves to the bytes that reached the target. */
  async writeTo(target: DiskTarget): Promise<number> {
    let written = 0;
    for (const part of this.parts) written += await target.write(part.offset, part.data);
    this.parts = [];
    return written;
  }
}
