import { canMergeExtents, mergeExtents, type Extent } from '../extents.js';

/**
 * Merges neighbours that are neighbours in memory too: a data extent that continues the previous
 * one on the disk and whose bytes follow the previous one's in the same buffer (clusters cut from
 * one decoded chunk), and zero extents that touch. Writes then go out in chunk-sized pieces rather
 * than one per cluster. Nothing is copied; a merged extent's release() releases every part.
 */
export async function* coalesceExtents(extents: AsyncIterable<Extent>): AsyncGenerator<Extent> {
  let held: Extent | undefined;
  for await (const extent of extents) {
    if (held && canMergeExtents(held, extent)) {
      held = mergeExtents(held, extent);
      continue;
    }
    if (held) yield held;
    held = extent;
  }
  if (held) yield held;
}
