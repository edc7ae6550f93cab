import { ExtentRun, type Extent } from '../extents.js';

/**
 * Merges neighbours that are neighbours in memory too: a data extent that continues the previous
 * one on the disk and whose bytes follow the previous one's in the same buffer (clusters cut from
 * one decoded chunk), and zero extents that touch. Writes then go out in chunk-sized pieces rather
 * than one per cluster. Nothing is copied; a merged extent's release() releases every part.
 * Extents that refer to a local file (inFile) pass as they are.
 */
export async function* coalesceExtents(extents: AsyncIterable<Extent>): AsyncGenerator<Extent> {
  const run = new ExtentRun();
  for await (const extent of extents) {
    if (run.add(extent)) continue;
    const merged = run.take();
    if (merged) yield merged;
    if (!run.add(extent)) yield extent;
  }
  const merged = run.take();
  if (merged) yield merged;
}
