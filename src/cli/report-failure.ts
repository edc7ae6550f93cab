import { isImportError, LARGER_PVC_REQUIRED, TooSmallError, usageError, withSourceNamed } from '../errors.js';
import { statSync } from 'node:fs';
import type { ImportRequest } from '../request.js';
import { formatBytes, formatPercent } from '../util/quantity.js';
import { usableSpace } from '../targets/usable-space.js';
import { escapeControls } from '../util/quote-text.js';

const MiB = 1 << 20;

/** Which CLI command ran the import: the flags a too-small hint may name differ. */
export type ImportCommand = 'import' | 'convert' | 'datavolume';

/** What can be done about a target too small for the image, in the terms of the command and the target. */
export function tooSmallHint(request: ImportRequest, command: ImportCommand, err?: unknown): string {
  if (request.target.kind === 'block') {
    // A stream's size shows only as it is written: by then the device's start holds part of it.
    const overwritten = err instanceof TooSmallError && err.streaming && err.available > 0 ? '; the start of the device was overwritten before the size was known' : '';
    return `use a larger device (block devices are not resized)${overwritten}`;
  }
  if (command === 'datavolume') {
    // Raising the request helps only when the request, not the free space under --out, was the limit.
    if (err instanceof TooSmallError && request.requestedSize !== undefined && !requestWasTheLimit(err, request.requestedSize, request.filesystemOverhead)) {
      return `the free space where --out is was the limit, not the storage request: make room there, or use --out on a file system with more room${replacedFileNote(request.target.path, err, request.filesystemOverhead)}`;
    }
    return "raise the DataVolume's storage request (spec.storage or spec.pvc resources.requests.storage), or use --out on a file system with more room";
  }
  if (command === 'convert') return 'write it where there is more room';
  if (request.target.kind === 'directory') return `extract it where there is more room${request.requestedSize !== undefined ? ', or give a larger --size' : ''}`;
  const sizeHint = requestedSizeHint(request, err);
  if (sizeHint) return sizeHint;
  // Free space is the limit here: --size could only lower it; the overhead kept free is what can give room.
  const overhead = request.filesystemOverhead;
  // Only when keeping nothing free makes room for it (a size known only as it streams: maybe).
  const couldFit =
    !(err instanceof TooSmallError) || err.streaming || err.spaceBeforeOverhead === undefined || usableSpace(err.spaceBeforeOverhead, 0) >= err.virtualSize;
  const lower = overhead > 0 && couldFit ? `, or lower --filesystem-overhead (${formatPercent(overhead)} of the space is kept free; 0 keeps none)` : '';
  return `write it where there is more room${lower}${replacedFileNote(request.target.path, err, overhead)}`;
}

/** Whether the requested size (less its overhead share), rather than the free space, left the image too little room. */
function requestWasTheLimit(err: TooSmallError, requested: number, overhead: number): boolean {
  // A size known only as it streams: the error says which space it ran out of.
  if (err.streaming) return err.spaceBeforeOverhead === requested;
  return usableSpace(requested, overhead) < err.virtualSize;
}

/**
 * When --size itself leaves too little room (its overhead share included), more free space
 * would not help: the size that fits is worth saying.
 */
function requestedSizeHint(request: ImportRequest, err: unknown): string | undefined {
  const requested = request.requestedSize;
  if (requested === undefined || !(err instanceof TooSmallError)) return undefined;
  if (err.streaming) {
    // The image's size shows only as it is decoded: how much larger is not known yet, only that --size was the limit.
    if (!requestWasTheLimit(err, requested, request.filesystemOverhead)) return undefined;
    return `give a larger --size: the image needs more than the ${formatBytes(err.virtualSize)} this one leaves it (its size shows only as it is decoded; \`cdi-importer info --scan\` measures it)`;
  }
  const { virtualSize } = err;
  const overhead = request.filesystemOverhead;
  if (!requestWasTheLimit(err, requested, overhead)) return undefined; // free space was the limit
  let needed = Math.ceil((Math.ceil(virtualSize / MiB) * MiB * (1 + overhead)) / MiB) * MiB;
  while (usableSpace(needed, overhead) < virtualSize) needed += MiB;
  // Keeping nothing free: the same --size, when that is enough (found by a QA pass: it was offered when it was not).
  const neededWithout = Math.ceil(virtualSize / MiB);
  const without = usableSpace(requested, 0) >= virtualSize ? '' : `${neededWithout}Mi with `;
  const kept = overhead > 0 ? ` (--filesystem-overhead keeps ${formatPercent(overhead)} of it free), or ${without}--filesystem-overhead 0` : '';
  // The free space was smaller still: a larger --size alone would only meet that limit next.
  const free = err.spaceBeforeOverhead;
  const room = free !== undefined && free < requested ? `; and write it where there is more room: the file system has only ${formatBytes(free)} free` : '';
  return `give a --size of at least ${needed / MiB}Mi for this ${formatBytes(virtualSize)} image${kept}${room}`;
}

/**
 * The file an import replaces stays until the new one is complete (written under a temporary name,
 * then renamed), so the space it holds does not count: worth saying when it is large.
 */
function replacedFileNote(destination: string, err: unknown, overhead: number): string {
  try {
    const info = statSync(destination);
    const held = info.blocks * 512;
    if (!info.isFile() || held < 1 << 20) return '';
    // Only worth saying when its space would make the difference (a size known before the copy).
    if (err instanceof TooSmallError && !err.streaming && err.spaceBeforeOverhead !== undefined && usableSpace(err.spaceBeforeOverhead + held, overhead) < err.virtualSize) return '';
    return `; the existing ${destination} (${formatBytes(held)} on disk) is replaced only once the new image is complete, so both must fit until then: remove it first if it can go`;
  } catch {
    return '';
  }
}

/** Exit codes of SPEC §8. */
export const EXIT_OK = 0;
const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/**
 * Prints one clear line for a failure (a stack trace only with CDI_IMPORTER_DEBUG=1) and returns the
 * exit code: 2 for usage errors, 1 for everything else. `hint` ends a too-small failure (tooSmallHint).
 */
export function reportFailure(failure: unknown, json: boolean, hint = 'write it where there is more room', jsonFields?: Record<string, unknown>): number {
  // Relative paths resolve against a working directory that was deleted (process.cwd() fails): no bug of ours.
  const err = (failure as NodeJS.ErrnoException)?.syscall === 'uv_cwd' ? usageError('the current directory no longer exists (it was deleted): cd to an existing directory, or give absolute paths') : failure;
  const category = isImportError(err) ? err.category : 'internal';
  // The pod's words end by asking for a larger PVC (CDI's controller reads them); at a terminal,
  // say what can be done about it instead.
  // A file name with an escape sequence in it (made by accident, or by someone) must not act on the terminal.
  const text = escapeControls(withSourceNamed(err));
  let message = category === 'too-small' && text.endsWith(LARGER_PVC_REQUIRED) ? `${text.slice(0, -LARGER_PVC_REQUIRED.length)}: ${hint}` : text;
  // Most mismatches are a digest of the decompressed image given for the compressed file.
  if (category === 'checksum') message += '; the checksum covers the source as fetched (before any decompression): check that it was made for this file';
  if (json) process.stdout.write(`${JSON.stringify({ ...jsonFields, ok: false, category, error: message })}\n`);
  process.stderr.write(`cdi-importer: error: ${message}\n`);
  if (process.env.CDI_IMPORTER_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return category === 'usage' ? EXIT_USAGE : EXIT_FAILED;
}
