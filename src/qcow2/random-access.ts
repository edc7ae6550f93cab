/**
 * The random-access driver: walks the L1/L2 tables in guest order and reads only allocated
 * clusters, with a bounded number of reads and decompressions in flight. Extents come out in
 * ascending guest order and cover [0, virtualSize) exactly once.
 */
import type { DiskImage, Extent } from '../extents.js';
import type { RandomAccessReader } from '../sources/source.js';
import { badInput } from '../errors.js';
import { HEADER_PROBE_BYTES, headerClusterSize, hex, parseQcow2Header, type ParseOptions, type Qcow2Header } from './header.js';
import { bytesPerL2, decodeL2Table, l1EntriesUsed, l2TableOffset, type Piece } from './cluster-map.js';
import { decompressCluster, inflateClustersNatively } from './decompress-cluster.js';
import type { Qcow2OpenOptions } from './options.js';
import { readPool } from '../util/buffer-pool.js';

/** Reads in flight: enough to hide latency (HTTP Range, thread-pool inflate), little memory. */
const MAX_IN_FLIGHT = 8;
/** Extents waiting their turn, reads or not (zero runs take no memory; this bounds the queue). */
const MAX_QUEUED = 64;
/**
 * Contiguous clusters are read together up to the reader's preferred size, by default this. From a
 * local file, 1 MiB reads reach the writer early and in steps (a 512 MiB qcow2 with 256 MiB of
 * contiguous data, medians of 11: 0.144 s with 4 MiB reads, 0.127 s). Over HTTP each read waits a
 * round trip, and the reader asks for 4 MiB (BlockCacheReader): with 1 MiB reads, eight in flight,
 * the same image took 1.46 s instead of 0.68 s at 20 ms of round trip, 2.1 s instead of 1.0 s at 50 ms.
 */
const DEFAULT_READ_BYTES = 1 << 20;
/** Reads are never larger than this (the read pool's buffers). */
const MAX_READ_BYTES = readPool.size;
/** Decompressed bytes per batch of compressed clusters. */
const MAX_BATCH_OUTPUT = 4 << 20;
/**
 * Bytes a batch's one read may take that none of its compressed clusters use. qemu-img convert -c
 * stores incompressible clusters uncompressed and its parallel writers interleave them with
 * compressed ones: a batch spanning them read them once in its span and once more in their own
 * runs (1.6x the file over HTTP Range). A little slack still joins clusters a few bytes apart.
 */
const MAX_BATCH_GAP_BYTES = 8 << 10;


/** Reads exactly `length` bytes or fails with a truncation error naming `what`. */
async function readExact(reader: RandomAccessReader, offset: number, length: number, what: string): Promise<Buffer> {
  if (offset + length > reader.size) {
    throw badInput(
      `qcow2 ${what} at offset ${hex(offset)} (+${length} bytes) lies past the end of the ${reader.size}-byte file: the image is truncated or corrupt`,
    );
  }
  const data = await reader.read(offset, length);
  if (data.length < length) {
    throw badInput(`qcow2 ${what} at offset ${hex(offset)}: only ${data.length} of ${length} bytes could be read: the image is truncated`);
  }
  return data;
}

export async function readQcow2Header(reader: RandomAccessReader, options: ParseOptions = {}): Promise<Qcow2Header> {
  const probe = await reader.read(0, Math.min(HEADER_PROBE_BYTES, reader.size));
  const clusterSize = headerClusterSize(probe);
  const head = await reader.read(0, Math.min(clusterSize, reader.size));
  return parseQcow2Header(head, reader.size, options);
}

/** The used part of the active L1 table; every entry is validated now, before any data. */
async function readL1(reader: RandomAccessReader, header: Qcow2Header): Promise<Buffer> {
  const used = l1EntriesUsed(header);
  const l1 = used === 0 ? Buffer.alloc(0) : await readExact(reader, header.l1TableOffset, used * 8, 'L1 table');
  for (let i = 0; i < used; i++) l2TableOffset(l1, i, header, reader.size);
  return l1;
}

export async function openQcow2RandomAccess(reader: RandomAccessReader, options: Qcow2OpenOptions = {}): Promise<DiskImage> {
  options.signal?.throwIfAborted();
  const header = await readQcow2Header(reader);
  const l1 = await readL1(reader, header);
  let used = false;
  return {
    format: 'qcow2',
    virtualSize: header.virtualSize,
    extents() {
      if (used) throw new Error('qcow2 extents() can be iterated only once');
      used = true;
      return randomAccessExtents(reader, header, l1, options.signal);
    },
    scratchBytesUsed: () => 0,
  };
}

/**
 * L2 tables read ahead of the one being walked: over HTTP each read waits a round trip, and a
 * sparse image has little data between its tables (a 16 GiB qcow2 with 32 tables and 128 MiB of
 * data, 50 ms away: 1.3 s with one table ahead). At most this many bytes of them.
 */
const L2_READ_AHEAD_BYTES = 1 << 20;
const MAX_L2_READ_AHEAD = 16;
/** L2 tables kept by their offset after they are read, for L1 entries that name one again. */
const RECENT_L2_TABLES = 4;

/**
 * Pieces in guest order, one L2 table's worth per step (a whole table at once keeps the per-cluster
 * work synchronous), the next tables read ahead.
 */
async function* walkPieces(reader: RandomAccessReader, header: Qcow2Header, l1: Buffer, maxRead: number): AsyncGenerator<Piece[]> {
  const span = bytesPerL2(header);
  const entries = l1EntriesUsed(header);
  // L1 entries sharing a table (qemu never writes that; one-pass refuses it) cost one read, not
  // one each: a 12 MB file whose 1.5 million entries name one 512-byte table took 89 s.
  const recent = new Map<number, Promise<Buffer>>();
  const readTable = (index: number) => {
    const offset = l2TableOffset(l1, index, header, reader.size);
    if (offset === 0) return undefined;
    let promise = recent.get(offset);
    if (promise) recent.delete(offset); // re-inserted below: the most recently used last
    else {
      promise = readExact(reader, offset, header.clusterSize, 'L2 table');
      promise.catch(() => {});
    }
    recent.set(offset, promise);
    if (recent.size > RECENT_L2_TABLES) recent.delete(recent.keys().next().value!);
    return { offset, promise };
  };
  const ahead = Math.max(1, Math.min(MAX_L2_READ_AHEAD, Math.floor(L2_READ_AHEAD_BYTES / header.clusterSize)));
  const upcoming: ReturnType<typeof readTable>[] = [];
  let requested = 0;
  for (let index = 0; index < entries; index++) {
    while (requested < entries && requested <= index + ahead) upcoming.push(readTable(requested++));
    const current = upcoming.shift();
    const guestStart = index * span;
    if (!current) {
      yield [{ kind: 'zero', guestOffset: guestStart, length: Math.min(span, header.virtualSize - guestStart) }];
      continue;
    }
    const table = await current.promise;
    yield decodeL2Table(table, guestStart, header, current.offset, maxRead);
  }
}

type Run =
  | { kind: 'zero'; guestOffset: number; length: number }
  | { kind: 'data'; guestOffset: number; length: number; hostOffset: number }
  | {
      kind: 'compressed';
      guestOffset: number;
      length: number;
      pieces: Extract<Piece, { kind: 'compressed' }>[];
      hostStart: number;
      hostEnd: number;
      /** Host bytes the pieces take (their sector-rounded lengths may overlap by less than a sector). */
      compressedBytes: number;
    };

async function* randomAccessExtents(
  reader: RandomAccessReader,
  header: Qcow2Header,
  l1: Buffer,
  signal?: AbortSignal,
): AsyncGenerator<Extent> {
  // Extents in guest order; only those that read count against MAX_IN_FLIGHT (a sparse image
  // alternates zero runs and data runs, and the zero runs must not hold the reads back).
  const queue: { extent: Promise<Extent>; reads: boolean }[] = [];
  let reading = 0;
  let run: Run | undefined;
  const maxRead = Math.min(MAX_READ_BYTES, reader.preferredReadBytes ?? DEFAULT_READ_BYTES);

  const start = (r: Run) => {
    const extent = resolveRun(reader, header, r);
    extent.catch(() => {}); // awaited in order below; this only silences an early failure
    const reads = r.kind !== 'zero';
    if (reads) reading++;
    queue.push({ extent, reads });
  };
  const next = () => {
    const { extent, reads } = queue.shift()!;
    if (reads) reading--;
    return extent;
  };

  for await (const pieces of walkPieces(reader, header, l1, maxRead)) {
    for (const piece of pieces) {
      const merged = run && extend(run, piece, reader.size, header, maxRead);
      if (!merged) {
        if (run) start(run);
        run = newRun(piece, reader.size, header.clusterSize);
      }
      while (reading >= MAX_IN_FLIGHT || queue.length >= MAX_QUEUED) {
        signal?.throwIfAborted();
        yield await next();
      }
    }
  }
  if (run) start(run);
  while (queue.length > 0) {
    signal?.throwIfAborted();
    yield await next();
  }
}

function clippedEnd(piece: Extract<Piece, { kind: 'compressed' }>, size: number): number {
  if (piece.hostOffset >= size) {
    throw badInput(
      `qcow2 compressed cluster for guest offset ${piece.guestOffset} is at host offset ${hex(piece.hostOffset)}, past the end of the ${size}-byte file: the image is truncated or corrupt`,
    );
  }
  // The sector-rounded size may run past the end of the file; qemu reads zeros there.
  return Math.min(piece.hostOffset + piece.compressedLength, size);
}

function newRun(piece: Piece, size: number, clusterSize: number): Run {
  if (piece.kind === 'compressed') {
    const hostEnd = clippedEnd(piece, size);
    return {
      kind: 'compressed',
      guestOffset: piece.guestOffset,
      length: piece.length,
      pieces: [piece],
      hostStart: piece.hostOffset,
      hostEnd,
      compressedBytes: hostEnd - piece.hostOffset,
    };
  }
  if (piece.kind === 'data' && piece.hostOffset + piece.length > size) {
    // A piece may be several clusters (decodeL2Table merges them): named is the first cluster past the end.
    const inside = Math.max(0, Math.floor((size - piece.hostOffset) / clusterSize) * clusterSize);
    throw badInput(
      `qcow2 data for guest offset ${piece.guestOffset + inside} is at host offset ${hex(piece.hostOffset + inside)} (+${Math.min(clusterSize, piece.length - inside)} bytes), past the end of the ${size}-byte file: the image is truncated or corrupt`,
    );
  }
  return { ...piece };
}

/** Grows `run` with `piece` when they are adjacent and of one kind and the read stays within `maxRead`; false otherwise. */
function extend(run: Run, piece: Piece, size: number, header: Qcow2Header, maxRead: number): boolean {
  if (run.guestOffset + run.length !== piece.guestOffset || run.kind !== piece.kind) return false;
  if (run.kind === 'zero') {
    run.length += piece.length;
    return true;
  }
  if (run.kind === 'data' && piece.kind === 'data') {
    if (run.hostOffset + run.length !== piece.hostOffset || run.length + piece.length > maxRead) return false;
    if (piece.hostOffset + piece.length > size) return false; // newRun reports it
    run.length += piece.length;
    return true;
  }
  if (run.kind === 'compressed' && piece.kind === 'compressed') {
    const end = clippedEnd(piece, size);
    const hostStart = Math.min(run.hostStart, piece.hostOffset);
    const hostEnd = Math.max(run.hostEnd, end);
    const compressedBytes = run.compressedBytes + (end - piece.hostOffset);
    if (hostEnd - hostStart > maxRead || (run.pieces.length + 1) * header.clusterSize > MAX_BATCH_OUTPUT) return false;
    if (hostEnd - hostStart > compressedBytes + MAX_BATCH_GAP_BYTES) return false;
    run.pieces.push(piece);
    run.hostStart = hostStart;
    run.hostEnd = hostEnd;
    run.compressedBytes = compressedBytes;
    run.length += piece.length;
    return true;
  }
  return false;
}

async function resolveRun(reader: RandomAccessReader, header: Qcow2Header, run: Run): Promise<Extent> {
  if (run.kind === 'zero') return { offset: run.guestOffset, length: run.length };
  if (run.kind === 'data') return readDataRun(reader, run);
  const span = await readExact(reader, run.hostStart, run.hostEnd - run.hostStart, 'compressed clusters');
  // Clusters are decoded side by side into one buffer (pooled when it fits), the extent's data.
  const { clusterSize } = header;
  const whole = run.pieces.length * clusterSize;
  const output = whole <= readPool.size ? readPool.take() : Buffer.allocUnsafe(whole);
  const pieces = run.pieces.map((piece) => {
    const from = piece.hostOffset - run.hostStart;
    return { from, length: Math.min(piece.compressedLength, span.length - from), hostOffset: piece.hostOffset };
  });
  const decodedNatively = header.compressionType === 'zlib' ? inflateClustersNatively(span, pieces, clusterSize, output) : undefined;
  await (decodedNatively ??
    Promise.all(
      pieces.map(({ from, length, hostOffset }, i) =>
        decompressCluster(header.compressionType, span.subarray(from, from + length), clusterSize, hostOffset, output.subarray(i * clusterSize, (i + 1) * clusterSize)),
      ),
    ));
  readPool.give(span); // decoded: the compressed bytes are no longer needed
  // Every piece but the last is a whole cluster, so the run's bytes are the buffer's first run.length.
  const data = output.subarray(0, run.length);
  return { offset: run.guestOffset, length: run.length, data, release: () => readPool.give(output) };
}

/**
 * A run of data clusters. Clusters that lie in holes of the image file (preallocation=metadata or
 * falloc: mapped, never written) read as zeros: with a map of the file's holes they are not read,
 * as qemu-img skips them. From a local file the target may copy the run itself (Extent.inFile);
 * the run's bounds were checked against the file's size when it was made.
 */
async function readDataRun(reader: RandomAccessReader, run: Extract<Run, { kind: 'data' }>): Promise<Extent> {
  const { guestOffset, length, hostOffset } = run;
  const what = `data for guest offset ${guestOffset}`;
  const ranges = reader.dataMap ? await reader.dataMap.dataIn(hostOffset, hostOffset + length) : [{ start: hostOffset, end: hostOffset + length }];
  if (ranges.length === 0) return { offset: guestOffset, length };
  const whole = ranges.length === 1 && ranges[0]!.start === hostOffset && ranges[0]!.end === hostOffset + length;
  if (whole && reader.localFile) return { offset: guestOffset, length, inFile: { file: reader.localFile, position: hostOffset } };
  if (whole) {
    const data = await readExact(reader, hostOffset, length, what);
    // The read buffer is this extent's alone: once written it can serve another read.
    return { offset: guestOffset, length, data, release: () => readPool.give(data) };
  }
  const data = length <= readPool.size ? readPool.take().subarray(0, length) : Buffer.allocUnsafe(length);
  let filled = 0;
  for (const range of ranges) {
    data.fill(0, filled, range.start - hostOffset);
    const part = await readExact(reader, range.start, range.end - range.start, what);
    part.copy(data, range.start - hostOffset);
    readPool.give(part);
    filled = range.end - hostOffset;
  }
  data.fill(0, filled);
  return { offset: guestOffset, length, data, release: () => readPool.give(data) };
}
