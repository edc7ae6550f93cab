import type { DiskImage } from '../extents.js';
import type { DiskTarget } from '../targets/disk-target.js';
import type { TargetPlan } from './plan-target.js';
import { Coverage } from './coverage.js';
import { badInput, tooSmall } from '../errors.js';
import { rawVirtualSize } from '../formats/raw-image.js';

/**
 * Drains the image's extents into the target. Extents past the capacity stop the import (raw
 * streams reveal their size only as they go); on block devices, whatever no extent covered is
 * zeroed so old data cannot show through.
 */
export async function writeExtents(
  image: DiskImage,
  target: DiskTarget,
  plan: TargetPlan,
  signal: AbortSignal,
): Promise<{ end: number; bytesWritten: number }> {
  const coverage = target.kind === 'block' ? new Coverage() : undefined;
  let end = 0;
  let bytesWritten = 0;
  for await (const extent of image.extents()) {
    signal.throwIfAborted();
    const extentEnd = extent.offset + extent.length;
    if (extentEnd > plan.capacity) {
      throw tooSmall(image.virtualSize ?? extentEnd, plan.capacity);
    }
    if (image.virtualSize !== undefined && extentEnd > image.virtualSize) {
      throw badInput(`image data at offset ${extent.offset} lies beyond its virtual size ${image.virtualSize}`);
    }
    if (extent.data) {
      await target.write(extent.offset, extent.data);
      bytesWritten += extent.length;
    } else {
      await target.zero(extent.offset, extent.length);
    }
    coverage?.add(extent.offset, extentEnd);
    end = Math.max(end, extentEnd);
  }
  const size = image.virtualSize ?? rawVirtualSize(end);
  if (size === 0 && image.format !== 'qcow2') {
    throw badInput('the image is empty: there is no disk data to import');
  }
  if (coverage) {
    for (const gap of coverage.gaps(size)) {
      signal.throwIfAborted();
      await target.zero(gap.offset, gap.length);
    }
  }
  return { end, bytesWritten };
}
