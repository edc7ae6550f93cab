import type { LocalFile } from '../extents.js';

/**
 * A destination for a disk image (file or block device). Targets know the destination only:
 * positional writes, holes or written zeros, growing, preallocation, fsync, rename.
 */
export interface DiskTarget {
  readonly kind: 'file' | 'block';
  /** The path users see in messages (the final name, not a temporary one). */
  readonly path: string;
  /**
   * Bytes an image may occupy: the usable space of SPEC §7 for files (requested size and
   * free space minus overhead), the device size for block devices.
   */
  readonly capacity: number;
  /**
   * Writes guest data at `offset`. Zero runs may become holes; the buffer may be reused after.
   * Resolves to the bytes that reached the destination (holes left out).
   */
  write(offset: number, data: Buffer): Promise<number>;
  /**
   * Writes `length` bytes of a local file, from `position`, at `offset`, as write() would write
   * them, without their passing through JavaScript. Resolves to the bytes that reached the destination.
   */
  copyFrom?(file: LocalFile, position: number, offset: number, length: number): Promise<number>;
  /** Makes [offset, offset+length) read as zeros (a no-op on fresh sparse files); resolves to the bytes written. */
  zero(offset: number, length: number): Promise<number>;
  /**
   * Before any write, for an image of `length` bytes that fits: lets the target make [0, length)
   * read as zeros cheaply if it can, so zero runs need no writing (block devices).
   */
  zeroAhead?(length: number): Promise<void>;
  /**
   * Before any write: fails now, in words, if the destination cannot grow to `size` bytes (a
   * file system's largest file, 16 TiB on ext4), rather than after the whole image is written.
   */
  checkSize?(size: number): Promise<void>;
  /**
   * Completes the target: size the file to `size` (never below what was written), preallocate
   * if asked, fsync, and move it into place. Returns whether preallocation was applied.
   */
  finish(size: number): Promise<{ preallocationApplied: boolean; size: number }>;
  /** Removes what was written (files) and closes. Safe to call more than once. */
  abort(): Promise<void>;
}
