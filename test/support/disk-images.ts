/** Disk-like test images: random (incompressible), text-like (compressible) and zero regions. */
import { closeSync, openSync, writeSync, ftruncateSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const WORDS = 'the quick brown fox jumps over lazy dog kernel module initrd boot partition sector inode journal'.split(' ');

function textBlock(size: number, seed: number): Buffer {
  const parts: string[] = [];
  let length = 0;
  let state = seed >>> 0 || 1;
  while (length < size) {
    state = (state * 1103515245 + 12345) >>> 0;
    const word = WORDS[state % WORDS.length]!;
    parts.push(word, state % 7 === 0 ? '\n' : ' ');
    length += word.length + 1;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

/**
 * Writes a raw image of `sizeBytes` made of 1 MiB regions cycling random / text / zero / text,
 * with small non-aligned data islands inside some zero regions (exercises sparse detection).
 */
export function makeDiskLikeImage(file: string, sizeBytes: number): void {
  const fd = openSync(file, 'w');
  try {
    const region = 1 << 20;
    for (let offset = 0, index = 0; offset < sizeBytes; offset += region, index++) {
      const length = Math.min(region, sizeBytes - offset);
      switch (index % 4) {
        case 0:
          writeSync(fd, randomBytes(length), 0, length, offset);
          break;
        case 1:
        case 3:
          writeSync(fd, textBlock(length, index), 0, length, offset);
          break;
        case 2:
          // Mostly zeros: a 100-byte island at an odd offset keeps one 4 KiB block allocated.
          if (length > 5000) writeSync(fd, randomBytes(100), 0, 100, offset + 4097);
          break;
      }
    }
    ftruncateSync(fd, sizeBytes);
  } finally {
    closeSync(fd);
  }
}
