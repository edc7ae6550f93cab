import type { Readable } from 'node:stream';
import type { ImportContext, ImportRequest, ImportResult } from '../request.js';
import type { DiskTarget } from '../targets/disk-target.js';
import { openSource } from '../sources/resolve-source.js';
import { openDiskImage, type OpenedDiskImage } from './open-disk-image.js';
import { planDiskTarget, type TargetPlan } from './plan-target.js';
import { writeExtents } from './write-extents.js';
import { abortedError, causedBySourceChange, fromSource, ScratchSpaceRequiredError, sourceChangeReason, tooSmall, usageError } from '../errors.js';
import { importArchive } from './import-archive.js';
import { importBlank } from './import-blank.js';
import { rawVirtualSize } from '../formats/raw-image.js';
import { nativeModule } from '../util/native-module.js';

/**
 * The one function every front door calls (DESIGN.md): fetch, unwrap, detect, convert, write,
 * verify, resize. Throws ImportError; on failure nothing that looks like a finished disk is left.
 */
export async function importImage(request: ImportRequest, ctx: ImportContext = {}): Promise<ImportResult> {
  // Loaded before any pool or decoder thread allocates: its start-up settings for the allocator
  // (two arenas, native/file-copy/file-copy.c) apply only to arenas made after it.
  nativeModule();
  try {
    return await importOnce(request, ctx);
  } catch (err) {
    const { source } = request;
    if (source.kind !== 'http' || source.wholeFile || !causedBySourceChange(err) || ctx.signal?.aborted) throw err;
    // Range reads and resumes need every answer to be the same file; a server whose replicas
    // disagree on ETag or Last-Modified (or a file replaced mid-import) gets what CDI always does,
    // and what the error would ask the user to do: one download of the whole file, from the start.
    ctx.log?.warn({ reason: (err as Error).message }, 'the server\'s answers do not make one file; starting again with one download of the whole file');
    return importOnce({ ...request, source: { ...source, wholeFile: true } }, ctx).catch((again: unknown) => {
      // Its advice (a seekable source, "HTTP with Range") is what was just tried: say why it was not used.
      if (again instanceof ScratchSpaceRequiredError) {
        again.message += ` (reading it by Range failed: ${sourceChangeReason(err)}; this attempt was one download of the whole file)`;
      }
      throw again;
    });
  }
}

async function importOnce(request: ImportRequest, ctx: ImportContext): Promise<ImportResult> {
  const signal = ctx.signal ?? new AbortController().signal;
  if (request.contentType === 'archive') return importArchive(request, { ...ctx, signal });
  if (request.source.kind === 'blank') return importBlank(request);
  if (request.target.kind === 'directory') throw usageError(`a ${request.contentType} import needs a file or block device target, not the directory ${request.target.path}`);

  const plan = await planDiskTarget(request);
  const { source, opened } = await openSource(request.source, signal, ctx.log).catch(async (err: unknown) => {
    await plan.abandon?.();
    throw err;
  });
  let disk: OpenedDiskImage | undefined;
  let target: DiskTarget | undefined;
  try {
    disk = await openDiskImage(opened, request, source.description, { ...ctx, signal }, { targetCopiesFiles: plan.kind === 'file' });
    const { image } = disk;
    whenDecoded(disk.innerStream, ctx.onSourceDecoded);
    if (image.virtualSize !== undefined) {
      checkFits(image.virtualSize, plan);
      ctx.onChecked?.();
    }
    signal.throwIfAborted();
    target = await plan.create();
    const expectedSize = finalSize(image.virtualSize, plan);
    if (expectedSize !== undefined) await target.checkSize?.(expectedSize);
    let checksum: ImportResult['checksum'];
    const reading = disk;
    const { end, bytesWritten } = await writeExtents(image, target, plan, signal, {
      // Before the disk's first MiB is written: a checksum mismatch leaves no whole-looking disk.
      beforeHead: async () => {
        // The checksum covers every source byte, including any the reader did not need.
        if (reading.innerStream && !reading.innerStream.readableEnded) {
          for await (const _ of reading.innerStream) void _;
        }
        checksum = reading.tap?.verify();
      },
    });
    // A stream that shows its size only as it goes (gzip, zstd) has fitted once it is all written.
    if (image.virtualSize === undefined) ctx.onChecked?.();
    const virtualSize = image.virtualSize ?? rawVirtualSize(end);
    const finished = await target.finish(finalSize(virtualSize, plan)!);
    return {
      formats: disk.chain,
      virtualSize,
      targetSize: finished.size,
      sourceBytes: disk.sourceBytes(),
      bytesWritten,
      scratchBytesUsed: image.scratchBytesUsed?.() ?? 0,
      preallocationApplied: plan.kind === 'block' ? request.preallocation : finished.preallocationApplied,
      labels: opened.labels,
      checksum,
    };
  } catch (err) {
    await (target ? target.abort() : plan.abandon?.());
    throw abortedError(fromSource(err, source.description), signal);
  } finally {
    opened.stream.destroy();
    disk?.innerStream?.destroy();
    await opened.randomAccess?.close();
  }
}

/** Calls `then` once `stream` (the decoded image a one-pass reader consumes) has ended; at once without one (random access). */
function whenDecoded(stream: Readable | undefined, then: (() => void) | undefined): void {
  if (!then) return;
  if (!stream || stream.readableEnded) then();
  else stream.once('end', then);
}

/** The disk's size at the end: its virtual size grown to the plan's (SPEC §7); undefined while neither is known. */
function finalSize(virtualSize: number | undefined, plan: TargetPlan): number | undefined {
  if (virtualSize === undefined) return plan.growTo;
  return plan.growTo !== undefined ? Math.max(virtualSize, plan.growTo) : virtualSize;
}

/** SPEC §7: fail before writing when the image cannot fit. */
function checkFits(virtualSize: number, plan: TargetPlan): void {
  if (virtualSize > plan.capacity) throw tooSmall(virtualSize, plan.capacity, false, plan.spaceBeforeOverhead);
}
