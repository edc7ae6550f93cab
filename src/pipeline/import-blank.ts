import type { ImportRequest, ImportResult } from '../request.js';
import { planDiskTarget } from './plan-target.js';
import { tooSmall, usageError } from '../errors.js';

/**
 * A blank disk (SPEC §5.4): a sparse file of the usable size, or nothing at all on a block
 * device (it is used as it is). Preallocation allocates the whole file.
 */
export async function importBlank(request: ImportRequest): Promise<ImportResult> {
  const plan = await planDiskTarget(request);
  if (plan.kind === 'block') {
    const device = await plan.create();
    try {
      // As CDI does (PreallocateBlankBlock): zeros make thin storage allocate and erase old data.
      if (request.preallocation) await device.zero(0, plan.capacity);
      await device.finish(plan.capacity);
    } catch (err) {
      await device.abort();
      throw err;
    }
    return blankResult(plan.capacity, request.preallocation);
  }
  if (plan.growTo === undefined) throw usageError('a blank disk needs a size: give the requested volume size (--size or IMPORTER_IMAGE_SIZE)');
  // "0 is larger than the available 0" would be the too-small line's words for it.
  if (request.requestedSize === 0) throw usageError('a blank disk of 0 bytes was asked for: give the requested volume size (--size or IMPORTER_IMAGE_SIZE) greater than 0');
  // A full volume leaves no usable space: a 0-byte disk would be reported as a blank disk made.
  if (plan.growTo === 0) throw tooSmall(request.requestedSize ?? 0, plan.capacity);
  const target = await plan.create();
  try {
    const finished = await target.finish(plan.growTo);
    return blankResult(finished.size, finished.preallocationApplied);
  } catch (err) {
    await target.abort();
    throw err;
  }
}

function blankResult(size: number, preallocationApplied: boolean): ImportResult {
  return {
    formats: ['blank'],
    virtualSize: size,
    targetSize: size,
    sourceBytes: 0,
    bytesWritten: 0,
    scratchBytesUsed: 0,
    preallocationApplied,
  };
}
