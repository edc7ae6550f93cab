import type { Extent } from '../extents.js';

/** Merged data extents stay at or below this: a few writes in flight keep memory small. */
const MAX_MERGED_BYTES = 4 << 20;

/**
 * Merges neighbours that are neighbours in memory too: a data extent that continues the previous
 * one on the disk and whose bytes follow the previous one's in the same buffer (clusters cut from
 * one decoded chunk), and zero extents that touch. Writes then go out in chunk-sized pieces rather
 * than one per cluster. Nothing is copied; a merged extent's release() releases every part.
 */
export async function* coalesceExtents(extents: AsyncIterable<Extent>): AsyncGenerator<Extent> {
  let held: Extent | undefined;
  for await (const extent of extents) {
    if (held && canMerge(held, extent)) {
      held = merge(held, extent);
      continue;
    }
    if (held) yield held;
    held = extent;
  }
  if (held) yield held;
}

function canMerge(a: Extent, b: Extent): boolean {
  if (a.offset + a.length !== b.offset) return false;
  if (a.inFile || b.inFile) return false;
  if (!a.data || !b.data) return !a.data && !b.data;
  return (
    a.data.buffer === b.data.buffer &&
    a.data.byteOffset + a.data.length === b.data.byteOffset &&
    a.length + b.length <= MAX_MERGED_BYTES
  );
}

function merge(a: Extent, b: Extent): Extent {
  const length = a.length + b.length;
  const release = a.release && b.release ? () => (a.release!(), b.release!()) : (a.release ?? b.release);
  if (!a.data) return { offset: a.offset, length, release };
  return { offset: a.offset, length, data: Buffer.from(a.data.buffer, a.data.byteOffset, length), release };
}
