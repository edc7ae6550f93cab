import { stat } from 'node:fs/promises';
import type { ImportContext, ImportRequest, ImportResult } from '../request.js';
import { openSource } from '../sources/resolve-source.js';
import { unwrapCompression } from '../formats/unwrap.js';
import { isUnsupportedCompression, looksLikeTar, unsupportedCompression } from '../formats/magic.js';
import { SourceTap } from './source-tap.js';
import { freeSpace } from '../targets/usable-space.js';
import { abortedError, badInput, fileProblem, fromSource, targetError, usageError } from '../errors.js';

/** The archive content type (SPEC §6): a tar, possibly compressed, extracted into a directory. */
export async function importArchive(request: ImportRequest, ctx: ImportContext & { signal: AbortSignal }): Promise<ImportResult> {
  if (request.source.kind === 'blank') throw usageError('Cannot create empty disk with content type archive');
  const directory = request.target.path;
  let statError: unknown;
  const existing = await stat(directory).catch((err: unknown) => void (statError = err));
  if (request.target.kind === 'block' || existing?.isBlockDevice()) {
    throw usageError('ContentType Archive cannot have block volumeMode');
  }
  if (!existing) {
    if ((statError as NodeJS.ErrnoException).code === 'ENOENT') throw targetError(`destination directory ${directory} does not exist: create it first`);
    throw targetError(`cannot use ${directory} as the destination directory: ${fileProblem(statError)}`, statError);
  }
  if (!existing.isDirectory()) throw targetError(`${directory} is not a directory: archives are extracted into a directory`);

  const requested = request.requestedSize;
  // A file system that reports no size (an unlimited tmpfs) bounds nothing here; the writes will.
  const free = (await freeSpace(directory)) ?? Number.MAX_SAFE_INTEGER;
  const availableBytes = requested !== undefined ? Math.min(free, requested) : free;
  // Loaded only for archives, so disk imports do not pay for tar-stream at start-up.
  const { extractArchive } = await import('../targets/archive/index.js');
  const { source, opened } = await openSource(request.source, ctx.signal, ctx.log);
  opened.randomAccess?.close();
  const tap = new SourceTap(request.checksum, opened.size ?? opened.progressTotal, ctx.progress);
  try {
    // No await between unwrapping and extractArchive (nor between opening and unwrapping):
    // the stream has no error listener until extractArchive attaches one, and a corrupt layer
    // or a dropped connection may fail at any moment.
    const unwrapped = await unwrapCompression(SourceTap.attach(opened.stream, tap), source.description, 'no archive to extract');
    if (isUnsupportedCompression(unwrapped.format)) throw badInput(unsupportedCompression(source.description, unwrapped.format));
    if (unwrapped.format !== 'tar' && !(unwrapped.format === 'raw' && looksLikeTar(unwrapped.head))) {
      throw badInput(`${source.description} is not a tar archive (found ${unwrapped.chain.join(' → ')}): content type archive needs a tar file`);
    }
    // A v7 tar, a GNU volume label first or an empty archive has no ustar magic but is a tar all the same.
    const formats = [...unwrapped.chain.slice(0, -1), 'tar'];
    let checksum: string | undefined;
    ctx.onChecked?.(); // an archive's size shows only entry by entry, as it is extracted
    const archive = await extractArchive(unwrapped.stream, directory, {
      signal: ctx.signal,
      where: source.description,
      availableBytes,
      // Verified before the extraction is final, so a mismatch removes what was extracted.
      beforeCommit: async () => {
        for await (const _ of unwrapped.stream) void _;
        ctx.onSourceDecoded?.();
        checksum = tap.verify();
      },
    });
    return {
      formats,
      virtualSize: archive.bytes,
      targetSize: archive.bytes,
      sourceBytes: tap.bytes,
      bytesWritten: archive.dataBytes,
      scratchBytesUsed: 0,
      preallocationApplied: false,
      archive,
      checksum,
    };
  } catch (err) {
    throw abortedError(fromSource(err, source.description), ctx.signal);
  } finally {
    opened.stream.destroy();
  }
}
