import type { DiskImage, Extent } from '../extents.js';
import type { DiskTarget } from '../targets/disk-target.js';
import type { TargetPlan } from './plan-target.js';
import { Coverage } from './coverage.js';
import { badInput, tooSmall } from '../errors.js';
import { rawVirtualSize } from '../formats/raw-image.js';
import { HEAD_BYTES, HeldHead } from './held-head.js';
import { readPool } from '../util/buffer-pool.js';
import { sourceEndedEarly } from '../util/file-copy.js';

/**
 * Positional writes in flight at once: decoding the next extent and reading the source overlap
 * with writing the previous ones.
 */
const WRITES_IN_FLIGHT = 4;
/**
 * ...and the bytes they may carry (one write at least, however large): four 2 MiB writes. Buffered
 * writes to one file take turns on its inode lock; the native writer now takes turns on a mutex of
 * its own first and hands the kernel 128 KiB at a time (native/file-copy/file-copy.c), so more
 * bytes in flight no longer mean threads spinning in the kernel. Before that, four 4 MiB writes in
 * flight at times made an import four times slower (a 512 MiB qcow2 with contiguous data: 0.71 s
 * against 0.17 s, medians of 11), and the budget was 4 MiB.
 */
const WRITE_BYTES_IN_FLIGHT = 8 << 20;
/**
 * Larger extents (4 MiB Range reads, batches of decoded clusters) go out as writes of this size.
 * 1 MiB until 2026-11-27: single 4 MiB writes had bad spells (a 512 MiB qcow2 over HTTP Range, runs
 * between 0.26 and 0.92 s), which were the page cache taking large writes in large folios (README,
 * "Writes of at most 512 KiB, then 128 KiB"). With the kernel given small pieces by the writer, 2 MiB
 * writes halve the trips per byte through the event loop (7-9 alternating runs against 1 MiB, with
 * 512 KiB pieces): qcow2 by Range from nginx 0.34 -> 0.29 s, raw.zst 0.52 -> 0.47 s, qcow2.xz
 * 1.41 -> 1.36 s; a local qcow2, raw.gz over HTTP and qcow2 through stdin the same.
 */
const MAX_WRITE_BYTES = 2 << 20;
/**
 * Copies between files (DiskTarget.copyFrom) hold no memory of ours, and the target copies them a
 * batch at a time (util/file-copy.ts): they get a window of their own, wide enough that the runs
 * asked for while one batch is copied make a large next batch.
 */
const COPIES_IN_FLIGHT = 1024;
const COPY_BYTES_IN_FLIGHT = 256 << 20;

/**
 * Drains the image's extents into the target. Extents past the capacity stop the import (raw
 * streams reveal their size only as they go); on block devices, whatever no extent covered is
 * zeroed so old data cannot show through. The first MiB goes last (HeldHead), after
 * `beforeHead` (the checksum's verdict): an import that stops earlier leaves no bootable-looking disk.
 */
export async function writeExtents(
  image: DiskImage,
  target: DiskTarget,
  plan: TargetPlan,
  signal: AbortSignal,
  options: { beforeHead?: () => Promise<void> } = {},
): Promise<{ end: number; bytesWritten: number }> {
  const coverage = target.kind === 'block' ? new Coverage() : undefined;
  const writes = new WriteWindow(WRITES_IN_FLIGHT, WRITE_BYTES_IN_FLIGHT);
  const copies = new WriteWindow(COPIES_IN_FLIGHT, COPY_BYTES_IN_FLIGHT);
  // Only an image known to fit: a volume too small is refused with nothing touched.
  if (target.zeroAhead && image.virtualSize !== undefined && image.virtualSize <= plan.capacity) await target.zeroAhead(image.virtualSize);
  let end = 0;
  let bytesWritten = 0;
  const count = (bytes: number) => {
    bytesWritten += bytes;
  };
  const head = new HeldHead();
  // A device's old start (its partition table) must not survive an interrupted import either
  // (never past the image's end when that is known); a fresh file already reads as zeros.
  if (target.kind === 'block') count(await target.zero(0, Math.min(HEAD_BYTES, plan.capacity, image.virtualSize ?? HEAD_BYTES)));
  for await (const extent of image.extents()) {
    signal.throwIfAborted();
    const extentEnd = extent.offset + extent.length;
    // Data past the size the image declared (a corrupt header or xz index) is the image's fault,
    // whatever the space: checked first, so it is never reported as a volume too small.
    if (image.virtualSize !== undefined && extentEnd > image.virtualSize) {
      throw badInput(`the image's data goes on past the virtual size of ${image.virtualSize} bytes it declares (at offset ${extent.offset}): the image is corrupt`);
    }
    if (extentEnd > plan.capacity) {
      throw image.virtualSize !== undefined
        ? tooSmall(image.virtualSize, plan.capacity, false, plan.spaceBeforeOverhead)
        : tooSmall(plan.capacity, plan.capacity, true, plan.spaceBeforeOverhead);
    }
    if (extent.inFile && target.copyFrom && extent.offset >= HEAD_BYTES) {
      const { file, position } = extent.inFile;
      await copies.add(target.copyFrom(file, position, extent.offset, extent.length).then(count), extent.length);
    } else if (extent.data || extent.inFile) {
      // Bytes by reference that the target cannot copy itself, or that the held head keeps, are read here.
      const now = head.take(extent.data ? extent : await readInFile(extent));
      if (now) await writeInPieces(now, target, writes, count);
    } else {
      await writes.add(target.zero(extent.offset, extent.length).then(count), 0);
    }
    coverage?.add(extent.offset, extentEnd);
    end = Math.max(end, extentEnd);
  }
  await Promise.all([writes.drain(), copies.drain()]);
  const size = image.virtualSize ?? rawVirtualSize(end);
  if (size === 0 && image.format !== 'qcow2') {
    throw badInput('the image is empty: there is no disk data to import');
  }
  if (coverage) {
    for (const gap of coverage.gaps(size)) {
      signal.throwIfAborted();
      bytesWritten += await target.zero(gap.offset, gap.length);
    }
  }
  await options.beforeHead?.();
  signal.throwIfAborted();
  bytesWritten += await head.writeTo(target);
  return { end, bytesWritten };
}

/** The extent with its bytes read from the local file it refers to. */
async function readInFile(extent: Extent): Promise<Extent> {
  const { file, position } = extent.inFile!;
  const data = await file.read(position, extent.length);
  if (data.length < extent.length) throw file.readFailure(sourceEndedEarly());
  return { offset: extent.offset, length: extent.length, data, release: () => readPool.give(data) };
}

/** Writes a data extent as writes of at most MAX_WRITE_BYTES; its buffer is released once all are done. */
async function writeInPieces(extent: Extent, target: DiskTarget, writes: WriteWindow, count: (bytes: number) => void): Promise<void> {
  const data = extent.data!;
  if (extent.length === 0) return void extent.release?.();
  const pieces: Promise<void>[] = [];
  for (let at = 0; at < extent.length; at += MAX_WRITE_BYTES) {
    const length = Math.min(MAX_WRITE_BYTES, extent.length - at);
    const written = target.write(extent.offset + at, data.subarray(at, at + length)).then(count);
    pieces.push(written);
    const last = at + length === extent.length;
    // The last piece's entry in the window stands for the release, after every piece is written.
    const settled = last && extent.release ? Promise.all(pieces).then(extent.release) : written;
    await writes.add(settled, length);
  }
}

/**
 * Keeps up to `limit` writes and `byteLimit` bytes running (one write at least, however large);
 * the first failure is thrown by the next add() or drain(). A full window waits for one write to
 * settle through a single promise: `Promise.race` over the writes in flight (up to 1024 copies)
 * put a reaction on each of them at every wait, a few hundred KiB of garbage per batch of copies.
 */
class WriteWindow {
  private running = 0;
  private bytes = 0;
  private failure: { error: unknown } | undefined;
  /** Settles when a write settles; made by the first add() that waits. */
  private space: { promise: Promise<void>; resolve: () => void } | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly limit: number,
    private readonly byteLimit: number,
  ) {}

  async add(write: Promise<void>, bytes: number): Promise<void> {
    this.running++;
    this.bytes += bytes;
    const settle = () => {
      this.running--;
      this.bytes -= bytes;
      this.inFlight.delete(tracked);
      this.space?.resolve();
      this.space = undefined;
    };
    const tracked = write.then(settle, (error: unknown) => {
      this.failure ??= { error };
      settle();
    });
    this.inFlight.add(tracked);
    while (this.running >= this.limit || (this.running > 0 && this.bytes >= this.byteLimit)) {
      if (!this.space) {
        let resolve!: () => void;
        const promise = new Promise<void>((done) => (resolve = done));
        this.space = { promise, resolve };
      }
      await this.space.promise;
    }
    if (this.failure) throw this.failure.error;
  }

  async drain(): Promise<void> {
    await Promise.all(this.inFlight);
    if (this.failure) throw this.failure.error;
  }
}
