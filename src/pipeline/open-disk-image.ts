import type { Readable } from 'node:stream';
import type { DiskImage, ExtentStream } from '../extents.js';
import { coalesceExtents } from './coalesce-extents.js';
import type { ImportContext, ImportRequest } from '../request.js';
import type { OpenedSource, RandomAccessReader } from '../sources/source.js';
import { DETECTION_BYTES, detectFormat, importRefusal, isUnsupportedCompression, looksLikeText } from '../formats/magic.js';
import { unwrapCompression } from '../formats/unwrap.js';
import { declaredUncompressedSize, knownRawLength, rawImage } from '../formats/raw-image.js';
import { hasHoles, sparseRawImage } from '../formats/sparse-raw-image.js';
import { SourceTap } from './source-tap.js';
import { badInput, ScratchSpaceRequiredError } from '../errors.js';
import { canCopyBetweenFiles } from '../util/file-copy.js';

export interface OpenedDiskImage {
  image: DiskImage;
  /** Format chain, outermost first: ['xz', 'qcow2']. */
  chain: string[];
  /** Counts and hashes the source bytes; undefined when the image is read by random access. */
  tap?: SourceTap;
  /** The stream the reader consumes, drained after the image so the checksum covers every byte. */
  innerStream?: Readable;
  /** Source bytes read so far. */
  sourceBytes(): number;
}

/**
 * The one place that decides how an image is read (DESIGN.md: the planner): random access for a
 * qcow2 the transport can seek in (unless a checksum needs every byte in order), one sequential
 * pass otherwise.
 */
export async function openDiskImage(
  opened: OpenedSource,
  request: ImportRequest,
  description: string,
  ctx: ImportContext,
  /** The target copies between files (DiskTarget.copyFrom): readers may hand it a local source's bytes by reference. */
  options: { targetCopiesFiles?: boolean } = {},
): Promise<OpenedDiskImage> {
  let declared: number | undefined;
  if (opened.randomAccess) {
    const head = await opened.randomAccess.read(0, DETECTION_BYTES);
    const detected = overruledByFormatFlag(detectFormat(head), request);
    const byRandomAccess = async (open: (reader: RandomAccessReader) => Promise<DiskImage>, format: string): Promise<OpenedDiskImage> => {
      opened.stream.destroy();
      const counting = new CountingReader(opened.randomAccess!, ctx, options.targetCopiesFiles === true && canCopyBetweenFiles());
      const image = await open(counting);
      return { image: { ...image, extents: () => counting.endOf(image.extents(), image.virtualSize) }, chain: [format], sourceBytes: () => counting.bytes };
    };
    if (detected === 'qcow2' && !request.checksum) {
      checkExpectedFormat('qcow2', request, description);
      return byRandomAccess((reader) => openQcow2RandomAccess(reader, request, ctx), 'qcow2');
    }
    // A sparse raw file is read by its data map, holes skipped (a checksum needs every byte in order).
    const { dataMap } = opened.randomAccess;
    if ((detected === 'raw' || detected === 'iso') && !request.checksum && dataMap && (await hasHoles(dataMap, opened.randomAccess.size))) {
      checkExpectedFormat(detected, request, description);
      return byRandomAccess((reader) => sparseRawImage(reader, dataMap, detected, description), detected);
    }
    declared = await declaredUncompressedSize(head, opened);
  }

  const tap = new SourceTap(request.checksum, opened.size ?? opened.progressTotal, ctx.progress);
  const tapped = SourceTap.attach(opened.stream, tap);
  const unwrapped = await unwrapCompression(tapped, description);
  const { stream } = unwrapped;
  const format = overruledByFormatFlag(unwrapped.format, request);
  const chain = [...unwrapped.chain.slice(0, -1), format];
  const result = (image: DiskImage): OpenedDiskImage => ({
    image,
    chain,
    tap,
    innerStream: stream,
    sourceBytes: () => tap.bytes,
  });
  if (format === 'raw' || format === 'iso' || format === 'qcow2') {
    try {
      checkExpectedFormat(format, request, description);
    } catch (err) {
      stream.destroy();
      throw err;
    }
  }
  if (format === 'raw' && request.expectedFormat === undefined && request.source.kind === 'http' && looksLikeText(unwrapped.head)) {
    // A server's answer in words (a JSON error, "File not found", a text listing) with status 200:
    // written as a raw disk it would look like a successful import. `import -f raw` takes it as it is.
    stream.destroy();
    throw badInput(
      `${description} is text (an error message, a JSON answer or a listing?), not a disk image: check the URL (import -f raw takes it as a raw disk all the same)`,
    );
  }
  if (format === 'raw' || format === 'iso') {
    return result(rawImage(stream, format, description, knownRawLength(chain, opened.size, declared)));
  }
  if (format === 'qcow2') {
    const image = await openQcow2Stream(stream, request, ctx);
    // A seekable qcow2 read in one pass only because a checksum needs its bytes in order: the
    // usual advice (a seekable source) is what was given, so say what does help.
    if (chain.length !== 1 || !opened.randomAccess || !request.checksum) return result(image);
    return result({ ...image, extents: () => explainedScratchNeed(image.extents()) });
  }
  stream.destroy();
  if (format === 'tar') {
    throw badInput(
      `${description} is a tar archive, not a disk image: extract its files with cdi-importer import --content-type archive -o DIR (contentType: archive in a DataVolume)`,
    );
  }
  const refusal = importRefusal(description, format);
  if (refusal !== undefined) throw badInput(refusal);
  throw badInput(`${description}: unexpected format ${format}`);
}

async function openQcow2RandomAccess(reader: RandomAccessReader, request: ImportRequest, ctx: ImportContext): Promise<DiskImage> {
  const qcow2 = await import('../qcow2/index.js');
  return qcow2.openQcow2RandomAccess(reader, { signal: ctx.signal, scratchDir: request.scratchDir });
}

async function openQcow2Stream(stream: Readable, request: ImportRequest, ctx: ImportContext): Promise<DiskImage> {
  const qcow2 = await import('../qcow2/index.js');
  const image = await qcow2.openQcow2Stream(stream, { signal: ctx.signal, scratchDir: request.scratchDir });
  // One extent per cluster; neighbours cut from one decoded chunk are written as one.
  return { ...image, extents: () => coalesceExtents(image.extents()) };
}

/**
 * Counts the bytes a random-access reader fetched (or handed over by reference), and reports
 * progress by how far through the disk the extents have come.
 */
class CountingReader implements RandomAccessReader {
  bytes = 0;
  // The first report waits as the others do: the header's 112 bytes in a few ms make a rate
  // that puts the ETA at hours.
  private lastReport = Date.now();
  constructor(
    private readonly inner: RandomAccessReader,
    private readonly ctx: ImportContext,
    /** Whether readers see the inner reader's localFile (and may yield its bytes by reference). */
    private readonly byReference: boolean,
  ) {}
  get localFile(): RandomAccessReader['localFile'] {
    return this.byReference ? this.inner.localFile : undefined;
  }
  get size(): number {
    return this.inner.size;
  }
  get dataMap(): RandomAccessReader['dataMap'] {
    return this.inner.dataMap;
  }
  get preferredReadBytes(): number | undefined {
    return this.inner.preferredReadBytes;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    const data = await this.inner.read(offset, length);
    this.bytes += data.length;
    return data;
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /**
   * Progress in the source's bytes, as the share of the disk the extents (in guest order) have
   * covered: neither the bytes read (holes and unallocated clusters are never read) nor the
   * furthest offset read (a qcow2's tables, a raw file's footer check near its end) says how much
   * is done. qemu-img convert -p counts the same way.
   */
  private reportProgress(guestEnd: number, virtualSize: number | undefined): void {
    const now = Date.now();
    if (!this.ctx.progress || !virtualSize || now - this.lastReport < 200) return;
    this.lastReport = now;
    const { size } = this.inner;
    this.ctx.progress({ bytes: Math.min(size, Math.floor((size * Math.min(guestEnd, virtualSize)) / virtualSize)), total: size });
  }

  /**
   * `extents`, then a last report at the end of the source once all are out: the reads stop
   * short of it (an unallocated tail, metadata read early) and the last report may be 200 ms old.
   */
  async *endOf(extents: ExtentStream, virtualSize: number | undefined): ExtentStream {
    for await (const extent of extents) {
      // Bytes left in the file for the target to copy count as read once handed over.
      if (extent.inFile) this.bytes += extent.length;
      this.reportProgress(extent.offset + extent.length, virtualSize);
      yield extent;
    }
    this.ctx.progress?.({ bytes: this.inner.size, total: this.inner.size });
  }
}

/**
 * -f raw overrules a LUKS header, as it does qemu-img's probe: a disk its guest encrypts whole
 * (cryptsetup on the device, no partition table) starts with one and is raw to the host. So it
 * does what only looks like .lzma, bzip2 or LZ4 data, or a web page: whatever bytes a raw disk starts with.
 */
function overruledByFormatFlag<T extends string>(detected: T, request: ImportRequest): T | 'raw' {
  if (request.expectedFormat !== 'raw') return detected;
  return detected === 'luks' || detected === 'html' || isUnsupportedCompression(detected) ? 'raw' : detected;
}

/** convert -f: the format the caller named, or a refusal before anything is written (an ISO is raw). */
function checkExpectedFormat(detected: 'raw' | 'iso' | 'qcow2', request: ImportRequest, description: string): void {
  const expected = request.expectedFormat;
  if (expected === undefined || expected === (detected === 'iso' ? 'raw' : detected)) return;
  const named = detected === 'iso' ? 'an ISO' : `a ${detected}`;
  throw badInput(`${description} is ${named} image, not ${expected} (-f ${expected}): check the file, or leave -f out to import what it is`);
}

async function* explainedScratchNeed(extents: ExtentStream): ExtentStream {
  try {
    yield* extents;
  } catch (err) {
    if (!(err instanceof ScratchSpaceRequiredError)) throw err;
    throw new ScratchSpaceRequiredError(
      'the checksum makes this seekable qcow2 be read in one pass, in order, and it stores clusters before the tables that map them (written after an internal snapshot, grown by qemu-img resize, or otherwise out of order): give a scratch directory (--scratch DIR; a scratch volume in a pod), or import it without the checksum to read it by random access',
    );
  }
}

