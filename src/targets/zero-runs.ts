/** The granularity of holes: qemu-img convert's default `-S 4k`, and the usual file-system block. */
export const HOLE_BLOCK = 4096;

const ZERO_BLOCK = Buffer.alloc(HOLE_BLOCK);

export interface DataRun {
  /** Offset within the buffer. */
  start: number;
  end: number;
}

/**
 * Splits `data`, which belongs at `fileOffset`, into the runs that must be written: every
 * block-aligned (relative to the file) 4 KiB block that is all zeros is left out, so it stays a hole
 * in a fresh sparse file. Partial blocks at the edges are left out too when they are zero; on a fresh
 * file they read back as zeros either way.
 */
export function dataRuns(data: Buffer, fileOffset: number): DataRun[] {
  const runs: DataRun[] = [];
  let runStart = -1;
  let pos = 0;
  const firstBoundary = (HOLE_BLOCK - (fileOffset % HOLE_BLOCK)) % HOLE_BLOCK;
  while (pos < data.length) {
    const blockEnd = Math.min(data.length, pos === 0 && firstBoundary > 0 ? firstBoundary : pos + HOLE_BLOCK);
    // Looking at the first and last byte in JS first spares most data blocks the native compare call.
    const isZero = data[pos] === 0 && data[blockEnd - 1] === 0 && ZERO_BLOCK.compare(data, pos, blockEnd, 0, blockEnd - pos) === 0;
    if (isZero) {
      if (runStart >= 0) runs.push({ start: runStart, end: pos });
      runStart = -1;
    } else if (runStart < 0) {
      runStart = pos;
    }
    pos = blockEnd;
  }
  if (runStart >= 0) runs.push({ start: runStart, end: data.length });
  return runs;
}
