/**
 * The one-pass driver: reads a qcow2 from a sequential stream exactly once. Host bytes are cut
 * into host clusters as they arrive; each one is handed to the requests ("wants") that cover it:
 * the header, the L1 table, L2 tables, refcount blocks, mapped data and compressed clusters.
 * A data cluster whose L2 entry is already known goes straight out as an extent. Bytes no want
 * covered yet are remembered (all-zero ranges as ranges, anything else spilled to scratch) while
 * some L2 table is still to come, and dropped once every mapping is known.
 */
import type { Readable } from 'node:stream';
import { ExtentRun, type DiskImage, type Extent } from '../extents.js';
import { badInput } from '../errors.js';
import { HEADER_PROBE_BYTES, headerClusterSize, hex, parseQcow2Header, type Qcow2Header } from './header.js';
import { bytesPerL2, decodeL2Table, partlyReadHostClusters, l1EntriesUsed, l2TableOffset, type Piece } from './cluster-map.js';
import { decompressCluster } from './decompress-cluster.js';
import { SpillFile } from './spill-file.js';
import type { Qcow2OpenOptions } from './options.js';
import { PoolLeases, chunkPool } from '../util/buffer-pool.js';
import { PassedZeroRanges } from './passed-zero-ranges.js';
import { describeWant, type Want } from './want.js';
import { WaitingWants } from './waiting-wants.js';
import { cover, fullyCovered, gapsOf, isZero, type WindowSlot } from './window-slot.js';

const MAX_DECOMPRESS_IN_FLIGHT = 8;
/**
 * Extents queued behind a compressed cluster still decoding before the reader waits for it.
 * Draining after each host cluster used to wait for each compressed cluster's decode as it
 * arrived, one or two running at a time: a 256 MiB `convert -c` image (100 MiB of data) took
 * 0.93 s through stdin and from its .gz, 0.68 / 0.69 s with this (32 behind: 0.75 / 0.82 s; 256:
 * no faster, 11 MB more memory); by random access from the file 0.54 s, qemu-img 0.30 s.
 */
const MAX_QUEUED_DECODES = 16 * MAX_DECOMPRESS_IN_FLIGHT;
/**
 * Recent host clusters stay in memory this long before anything uncovered in them goes to
 * scratch: qemu puts the first compressed clusters of a new L2 range in the tail of the previous
 * cluster, just before that L2 table, and preallocated images put L2 tables before the L1.
 */
const WINDOW_BYTES = 4 << 20;

interface PendingCluster {
  decode(): Promise<Extent>;
  promise?: Promise<Extent>;
  settled?: boolean;
  /** Bytes of its own copy of the compressed data, counted against MAX_COMPRESSED_COPIES until it goes out. */
  copied: number;
}

/**
 * Work on host bytes that already went by (kept in scratch or as zero ranges), done while
 * draining, one step at a time, each step's extents going out before the next step runs: a late
 * L1 table (an image grown by `qemu-img resize` gets a new one at its end) maps every spilled
 * cluster at once, and reading them all back before writing any held the whole spill in memory.
 */
interface PassedWork {
  /** Does the next step; false once there is none. */
  step(): Promise<boolean>;
}

type Queued = Extent | PendingCluster | PassedWork;

/**
 * Wants waiting for host bytes still to come, at most: about 40 bytes each for whole data
 * clusters (WaitingWants), so some 40 MiB.
 * An image made by qemu-img convert has at most one L2 table's worth ahead of its data (8192 at
 * 64 KiB clusters); only preallocated images of tens of GiB, or hostile ones (a few KiB of
 * .xz can map petabytes), map more before their data comes.
 */
const MAX_WAITING_WANTS = 1 << 20;
/**
 * Compressed clusters' bytes copied out of the stream (a cluster across two host clusters, or one
 * whose bytes already went by) between two drains of the queue, which decode and let them go.
 * qemu never lets two compressed clusters of one layer claim the same bytes beyond a shared last
 * sector, so a real image copies about what the window holds; a few KiB of .xz whose thousand
 * clusters all claim one 4 MiB range would copy gigabytes.
 */
const MAX_COMPRESSED_COPIES = 256 << 20;

/** Internal: inspect runs the driver without producing data, to measure the scratch a real run needs. */
export interface MeasureOptions {
  /** Memory for clusters a real run would spill; beyond it the measurement stops (SpillBudgetExceeded). */
  measureSpillBudget: number;
  /** Return an image an import refuses (its header's `refusal` set) rather than throwing; its extents() throw. */
  describeRefused: boolean;
}

export async function openQcow2Stream(
  stream: Readable,
  options: Qcow2OpenOptions & Partial<MeasureOptions> = {},
): Promise<DiskImage & { header: Qcow2Header; /** The most compressed clusters that decoded at once (tests: they overlap). */ decodesAtOncePeak(): number }> {
  options.signal?.throwIfAborted();
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const pulled: Buffer[] = [];
  let pulledBytes = 0;
  let ended = false;
  const pull = async (atLeast: number) => {
    while (!ended && pulledBytes < atLeast) {
      const next = await chunks.next();
      if (next.done) ended = true;
      else {
        const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as Uint8Array);
        pulled.push(chunk);
        pulledBytes += chunk.length;
      }
    }
    return Buffer.concat(pulled);
  };
  let header: Qcow2Header;
  try {
    const clusterSize = headerClusterSize(await pull(HEADER_PROBE_BYTES));
    header = parseQcow2Header(await pull(clusterSize), undefined, { describeRefused: options.describeRefused });
  } catch (err) {
    stream.destroy();
    throw err;
  }
  const { refusal } = header;
  if (refusal) {
    // Described only: its data is elsewhere, encrypted or untrusted, so nothing reads it.
    stream.destroy();
    return { format: 'qcow2', header, virtualSize: header.virtualSize, extents: () => { throw refusal; }, decodesAtOncePeak: () => 0 };
  }
  const head = Buffer.concat(pulled);
  const engine = new OnePassEngine(header, options);
  let used = false;
  return {
    format: 'qcow2',
    header,
    virtualSize: header.virtualSize,
    extents() {
      if (used) throw new Error('qcow2 extents() can be iterated only once');
      used = true;
      return engine.run(head, ended ? undefined : chunks, stream);
    },
    scratchBytesUsed: () => engine.spill.bytesUsed,
    decodesAtOncePeak: () => engine.decodesAtOncePeak,
  };
}

class OnePassEngine {
  readonly spill: SpillFile;
  private decodesRunning = 0;
  decodesAtOncePeak = 0;
  private readonly cs: number;
  /** Wants not started yet, by the host cluster they start in. */
  private readonly waiting: WaitingWants;
  private active: Want[] = [];
  /** Host bytes before this offset have been handed out. */
  private processedEnd = 0;
  /** The most recent host clusters, with the ranges in them no want has taken yet. */
  private readonly window: WindowSlot[] = [];
  private windowBytes = 0;
  private readonly windowLimit: number;
  /** Passed host ranges no want covered and that were all zeros: [start, end) pairs, ascending. */
  private readonly passedZeros = new PassedZeroRanges();
  private l1Parsed = false;
  private l2Pending = 0;
  /**
   * Extents ready to go, in order. Compressed clusters wait here as inputs and are decoded only
   * a few at a time while draining: one host cluster may hold thousands of compressed clusters,
   * and decoding them all at once would hold thousands of decoded clusters in memory.
   */
  private out: Queued[] = [];
  /** Bytes counted against MAX_COMPRESSED_COPIES since the queue last drained. */
  private compressedCopies = 0;

  private readonly measuring: boolean;
  /**
   * Decoders hand out pooled chunks; clusters are views of them (no copy). A chunk goes back to the
   * pool once the run has passed it, it left the window and every extent cut from it is written.
   */
  private readonly leases = new PoolLeases(chunkPool);

  constructor(
    private readonly header: Qcow2Header,
    private readonly options: Qcow2OpenOptions & Partial<MeasureOptions>,
  ) {
    this.cs = header.clusterSize;
    this.waiting = new WaitingWants(this.cs);
    this.measuring = options.measureSpillBudget !== undefined;
    this.spill = new SpillFile(options.scratchDir, options.measureSpillBudget);
    this.windowLimit = Math.max(WINDOW_BYTES, 2 * this.cs);
    // The whole first cluster is read before anything else, though the header is less of it.
    this.register({ start: 0, end: this.cs, kind: 'metadata', what: 'first cluster (the header)', done: () => {} });
    const l1Entries = l1EntriesUsed(header);
    if (l1Entries === 0) this.l1Parsed = true;
    else {
      const start = header.l1TableOffset;
      this.register({ start, end: start + l1Entries * 8, kind: 'metadata', what: 'L1 table', done: (l1) => this.onL1(l1) });
    }
    if (header.refcountTableClusters > 0) {
      const start = header.refcountTableOffset;
      this.register({
        start,
        end: start + header.refcountTableClusters * this.cs,
        kind: 'metadata',
        what: 'refcount table',
        done: (table) => this.onRefcountTable(table),
      });
    }
  }

  async *run(head: Buffer, rest: AsyncIterator<Buffer> | undefined, stream: Readable): AsyncGenerator<Extent> {
    const signal = this.options.signal;
    let cur: Buffer | undefined;
    let fill = 0;
    /** The last extents queued, still open to merging with the next. */
    const held = new ExtentRun();
    try {
      let chunk: Buffer | undefined = head;
      while (chunk) {
        signal?.throwIfAborted();
        this.leases.hold(chunk);
        let at = 0;
        while (at < chunk.length) {
          // Most host clusters need no waiting (a data cluster's extent is queued at once): the
          // awaits and the drain below happen only when there is something to wait for.
          let pending: Promise<void> | undefined;
          if (fill === 0 && chunk.length - at >= this.cs) {
            pending = this.onCluster(chunk.subarray(at, at + this.cs));
            at += this.cs;
          } else {
            cur ??= Buffer.allocUnsafe(this.cs);
            const n = Math.min(this.cs - fill, chunk.length - at);
            chunk.copy(cur, fill, at, at + n);
            fill += n;
            at += n;
            if (fill === this.cs) {
              pending = this.onCluster(cur);
              cur = undefined;
              fill = 0;
            }
          }
          if (pending) await pending;
          if (this.out.length > 0) {
            if (onlyExtents(this.out)) {
              // The usual case, a data cluster's extent: merged here with the clusters before it
              // from the same chunk (ExtentRun), so the consumer gets one extent per
              // chunk rather than per cluster.
              for (const extent of this.out as Extent[]) {
                if (held.add(extent)) continue;
                yield held.take()!;
                if (!held.add(extent)) yield extent;
              }
              this.out.length = 0;
              this.compressedCopies = 0;
            } else {
              const merged = held.take();
              if (merged) yield merged;
              yield* this.drain(this.out, false);
            }
          }
          const trimmed = this.trimWindow();
          if (trimmed) await trimmed;
        }
        this.leases.release(chunk);
        if (!rest) break;
        const next = await rest.next();
        chunk = next.done ? undefined : Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as Uint8Array);
      }
      const merged = held.take();
      if (merged) yield merged;
      if (fill > 0) {
        await this.onCluster(cur!.subarray(0, fill));
        yield* this.drain(); // before onEnd, which judges what is still missing
      }
      await this.onEnd();
      yield* this.drain();
    } finally {
      this.window.length = 0;
      stream.destroy();
      await this.spill.dispose();
    }
  }

  /**
   * Yields what is queued, in order, with up to MAX_DECOMPRESS_IN_FLIGHT decodes running ahead.
   * Unless `all`, it stops at a compressed cluster still decoding while few extents are queued and
   * no work on passed bytes (PassedWork) waits behind them: the next host clusters are read
   * meanwhile, and their compressed clusters decode alongside.
   */
  private async *drain(out = this.out, all = true): AsyncGenerator<Extent> {
    // A read index instead of shift(): one L2 table can queue hundreds of thousands of zero extents.
    let head = 0;
    try {
      while (head < out.length) {
        let started = 0;
        for (let i = head; i < out.length && i < head + 4 * MAX_DECOMPRESS_IN_FLIGHT && started < MAX_DECOMPRESS_IN_FLIGHT; i++) {
          const item = out[i]!;
          if (!('decode' in item)) continue;
          if (!item.promise) {
            item.promise = item.decode();
            this.decodesAtOncePeak = Math.max(this.decodesAtOncePeak, ++this.decodesRunning);
            const settle = () => {
              item.settled = true;
              this.decodesRunning--;
            };
            item.promise.then(settle, settle); // awaited in order below; this also silences an early failure
          }
          started++;
        }
        const item = out[head]!;
        if (!all && 'decode' in item && !item.settled && out.length - head <= MAX_QUEUED_DECODES && !stepQueued(out, head)) return;
        // Let go of it now, not when the queue is done: one L2 table's queue holds thousands of
        // clusters, and each would keep its bytes until then.
        (out as (Queued | undefined)[])[head++] = undefined;
        if ('step' in item) yield* this.runPassedWork(item);
        else if ('offset' in item) yield item;
        else {
          const extent = await item.promise!;
          this.compressedCopies -= item.copied;
          yield extent;
        }
      }
      // Every copy queued so far is decoded and let go.
      this.compressedCopies = 0;
    } finally {
      out.splice(0, head);
    }
  }

  /** Runs `work` step by step; what a step queues goes out before the next step. */
  private async *runPassedWork(work: PassedWork): AsyncGenerator<Extent> {
    for (let more = true; more; ) {
      const outer = this.out;
      const queued: Queued[] = [];
      this.out = queued;
      try {
        more = await work.step();
      } finally {
        this.out = outer;
      }
      yield* this.drain(queued);
    }
  }

  private register(want: Want): void {
    const index = Math.floor(want.start / this.cs);
    if (want.kind === 'data') {
      // Two guest clusters on one host cluster: qemu never writes that in one layer (qemu-img
      // check calls it a refcount error), and it is how a tiny image maps a huge disk.
      for (const other of this.waiting.at(index)) {
        if (other.kind === 'data' && other.start < want.end && want.start < other.end) {
          throw badInput(
            `qcow2 host cluster ${hex(index * this.cs)} holds the data of guest offsets ${other.guestOffset} and ${want.guestOffset}: one layer never shares a cluster, so the image is corrupt`,
          );
        }
      }
    }
    if (this.waiting.count >= MAX_WAITING_WANTS) {
      throw badInput(
        `qcow2 image maps more than ${MAX_WAITING_WANTS} clusters ahead of their data (L2 tables first, as in a preallocated or hostile image): read in one pass that would take too much memory; import it from a seekable source (a local file, or an HTTP server with Range requests)`,
      );
    }
    this.waiting.add(index, want);
  }

  /**
   * Hands one host cluster (shorter at the end of the file) to the wants covering it. A promise
   * only when a want's completion must be waited for (metadata being parsed).
   */
  private onCluster(buf: Buffer): Promise<void> | undefined {
    const start = this.processedEnd;
    const index = start / this.cs;
    const end = start + buf.length;
    this.waiting.takeInto(index, this.active);

    // Which bytes of this cluster some want covers; the rest may still be needed later.
    const slot: WindowSlot = { index, start, buf, covered: [], provisional: [] };
    const completed: [Want, Buffer][] = [];
    const stillActive: Want[] = [];
    for (const want of this.active) {
      const from = Math.max(want.start, start);
      const to = Math.min(want.end, end);
      cover(slot, from, to, want);
      if (want.end <= end && want.start >= start && !want.buf) {
        completed.push([want, buf.subarray(want.start - start, want.end - start)]); // zero-copy
        continue;
      }
      want.buf ??= this.bufferFor(want);
      if (to > from) buf.copy(want.buf, from - want.start, from - start, to - start);
      if (want.end <= end) completed.push([want, want.buf]);
      else stillActive.push(want);
    }
    this.active = stillActive;

    this.processedEnd = end;
    this.window.push(slot);
    this.leases.hold(buf);
    this.windowBytes += buf.length;
    return this.completeAll(completed);
  }

  /** complete() for each, in order; a promise only once one of them returns one. */
  private completeAll(completed: [Want, Buffer][], from = 0): Promise<void> | undefined {
    for (let i = from; i < completed.length; i++) {
      const [want, data] = completed[i]!;
      const pending = this.complete(want, data);
      if (pending) return pending.then(() => this.completeAll(completed, i + 1));
    }
    return undefined;
  }

  /**
   * Evicts the oldest clusters beyond the window's size. Called after a cluster's work is drained,
   * not from onCluster: the L2 tables a new L1 maps are read while draining (PassedWork), and a
   * table still in the window must be taken from there, not spilled first.
   */
  private trimWindow(): Promise<void> | undefined {
    while (this.windowBytes > this.windowLimit) {
      const pending = this.evict(this.window.shift()!);
      if (pending) return pending.then(() => this.trimWindow());
    }
    return undefined;
  }

  /** While an L2 table is still to come, any host cluster may turn out to be mapped data. */
  private mayStillBeMapped(): boolean {
    return !this.l1Parsed || this.l2Pending > 0;
  }

  /** A cluster leaves memory: what no want took is kept (zeros as ranges, else scratch) if it may still be needed. */
  private evict(slot: WindowSlot): Promise<void> | undefined {
    this.windowBytes -= slot.buf.length;
    if (!this.mayStillBeMapped() || fullyCovered(slot)) {
      this.leases.release(slot.buf);
      return undefined;
    }
    return this.keepUncovered(slot);
  }

  /** evict()'s part for a slot with bytes no want took yet. */
  private async keepUncovered(slot: WindowSlot): Promise<void> {
    if (this.measuring) await this.measureEnds(slot);
    let spill = false;
    for (const [from, to] of gapsOf(slot)) {
      if (isZero(slot.buf, from, to)) this.passedZeros.add(slot.start + from, slot.start + to);
      else spill = true;
    }
    if (spill) await this.spill.put(slot.index, slot.buf);
    this.leases.release(slot.buf);
  }

  /**
   * Measuring decodes nothing to write, but a real run knows, by the time a cluster is evicted,
   * where each compressed cluster in it ends within its last sector (gapsOf): the rest of that
   * sector may hold the next compressed cluster, mapped by a table still to come, and must be
   * kept. Where another cluster starts inside the sector, this one ends there (qemu packs them
   * back to back); otherwise it is decoded to find out, which few need.
   */
  private async measureEnds(slot: WindowSlot): Promise<void> {
    const starts = [...slot.covered.map(([from]) => from), ...slot.provisional.map(({ from }) => from)];
    for (const { from, to, want } of slot.provisional) {
      if (want.consumedEnd !== undefined) continue;
      const next = Math.min(...starts.filter((start) => start > from && start < to));
      if (Number.isFinite(next)) want.consumedEnd = slot.start + next;
      else if (want.input) {
        const cluster = await decompressCluster(this.header.compressionType, want.input, this.cs, want.start);
        want.consumedEnd = want.start + cluster.consumed;
      }
      want.input = undefined;
    }
  }

  /**
   * A want for host bytes: started later when they are still to come, served from what was kept
   * (the last cluster, scratch, zero ranges) when they already went by.
   */
  private async want(want: Want): Promise<void> {
    if (want.start >= this.processedEnd) {
      this.register(want);
      return;
    }
    if (want.kind !== 'metadata' && this.beforeWindow(want.end)) {
      // Kept in scratch or as zeros, which stay until the end: read when its turn comes to go out.
      this.out.push({ step: () => this.takePassed(want).then(() => false) });
      return;
    }
    await this.takePassed(want);
  }

  /** True when host bytes before `end` have all left the window (what a later cluster evicts stays readable). */
  private beforeWindow(end: number): boolean {
    const first = this.window[0];
    return first === undefined ? end <= this.processedEnd : end <= first.start;
  }

  /** Serves a want from the bytes that went by, and takes the rest as they come. */
  private async takePassed(want: Want): Promise<void> {
    const passedEnd = Math.min(want.end, this.processedEnd);
    want.buf = this.bufferFor(want);
    const available = await this.readPassed(want, passedEnd);
    if (available < passedEnd - want.start) {
      if (!want.mayBeShort || available === 0) {
        throw badInput(
          `qcow2 ${describeWant(want)} at host offset ${hex(want.start)} is mapped only after those bytes were used for something else: the image is corrupt`,
        );
      }
      // Sector-rounding tail of a compressed cluster that another want consumed: not needed.
      await this.complete(want, want.buf.subarray(0, available));
      return;
    }
    if (want.end > this.processedEnd) this.active.push(want);
    else await this.complete(want, want.buf);
  }

  /** A want's bytes are all here: data goes out, compressed clusters queue for decoding, metadata is parsed. */
  private complete(want: Want, data: Buffer): Promise<void> | void {
    if (want.kind === 'data') {
      this.leases.hold(data);
      this.emit({ offset: want.guestOffset!, length: want.length!, data, release: () => this.leases.release(data) });
    } else if (want.kind === 'compressed') {
      this.emitCompressed(want, data);
    } else {
      return want.done?.(data);
    }
  }

  /** Fills `want.buf` from passed bytes [want.start, end); returns how many leading bytes were available. */
  private async readPassed(want: Want, end: number): Promise<number> {
    const { start } = want;
    const into = want.buf!;
    let at = start;
    while (at < end) {
      const index = Math.floor(at / this.cs);
      const clusterStart = index * this.cs;
      let to = Math.min(end, clusterStart + this.cs);
      const slot = this.windowSlot(index);
      if (slot && to - clusterStart <= slot.buf.length) {
        slot.buf.copy(into, at - start, at - clusterStart, to - clusterStart);
        cover(slot, at, to, want);
      } else if (this.spill.has(index)) {
        await this.spill.read(index, at - clusterStart, to - at, into, at - start);
      } else if (this.passedZeros.endAt(at) > at) {
        // Zeros up to the range's end; what follows in this cluster may have been kept otherwise.
        to = Math.min(to, this.passedZeros.endAt(at));
        into.fill(0, at - start, to - start);
      } else {
        return at - start;
      }
      at = to;
    }
    return end - start;
  }

  private windowSlot(index: number): WindowSlot | undefined {
    const first = this.window[0];
    if (!first || index < first.index) return undefined;
    const slot = this.window[index - first.index];
    return slot && slot.index === index ? slot : this.window.find((s) => s.index === index);
  }

  private async onL1(l1: Buffer): Promise<void> {
    const span = bytesPerL2(this.header);
    const entries = l1EntriesUsed(this.header);
    const tables: [number, number][] = [];
    // A run of empty L1 entries is one zero extent: memory must not follow the virtual size (a
    // 5 KB .xz of a 2 PiB image has 4 Mi empty entries).
    let emptyFrom = -1;
    const emitEmpty = (until: number) => {
      if (emptyFrom < 0) return;
      const start = emptyFrom * span;
      this.emit({ offset: start, length: Math.min(until * span, this.header.virtualSize) - start });
      emptyFrom = -1;
    };
    for (let index = 0; index < entries; index++) {
      const offset = l2TableOffset(l1, index, this.header);
      if (offset === 0) {
        if (emptyFrom < 0) emptyFrom = index;
        continue;
      }
      emitEmpty(index);
      tables.push([index, offset]);
    }
    emitEmpty(entries);
    this.l2Pending = tables.length;
    this.l1Parsed = true;
    if (tables.length === 0) return;
    const seen = new Map<number, number>();
    for (const [index, offset] of tables) {
      const first = seen.get(offset);
      if (first !== undefined) {
        // One L2 table for two guest ranges makes a tiny image stand for a huge disk; qemu never writes it.
        throw badInput(`qcow2 L1 entries ${first} and ${index} point to the same L2 table at ${hex(offset)}: the image is corrupt`);
      }
      seen.set(offset, index);
    }
    // One table at a time, each one's clusters out before the next table is read (PassedWork).
    let next = 0;
    this.out.push({
      step: async () => {
        const [index, offset] = tables[next++]!;
        await this.want({
          start: offset,
          end: offset + this.cs,
          kind: 'metadata',
          what: `L2 table (L1 entry ${index})`,
          done: (table) => this.onL2(table, index * span, offset),
        });
        return next < tables.length;
      },
    });
  }

  private async onL2(table: Buffer, guestStart: number, offset: number): Promise<void> {
    this.l2Pending--;
    for (const piece of decodeL2Table(table, guestStart, this.header, offset)) await this.onPiece(piece);
    if (this.mayStillBeMapped()) {
      // Zero-flagged preallocated clusters and unallocated subclusters hold stale bytes nobody reads.
      for (const host of partlyReadHostClusters(table, this.header)) {
        if (host >= this.processedEnd) this.register({ start: host, end: host + this.cs, kind: 'metadata', what: 'allocated cluster', optional: true });
      }
    }
  }

  private async onPiece(piece: Piece): Promise<void> {
    if (piece.kind === 'zero') {
      this.emit({ offset: piece.guestOffset, length: piece.length });
    } else if (piece.kind === 'data') {
      await this.want({ start: piece.hostOffset, end: piece.hostOffset + piece.length, kind: 'data', guestOffset: piece.guestOffset, length: piece.length });
    } else {
      await this.want({
        start: piece.hostOffset,
        end: piece.hostOffset + piece.compressedLength,
        kind: 'compressed',
        guestOffset: piece.guestOffset,
        length: piece.length,
        mayBeShort: true,
      });
    }
  }

  private emitCompressed(want: Want, input: Buffer): void {
    if (this.measuring) {
      // Nothing is written, so nothing is decoded, unless where it ends must be known (measureEnds).
      this.countCompressedCopy(want);
      want.input = Buffer.from(input);
      return;
    }
    this.leases.hold(input);
    const guestOffset = want.guestOffset!;
    const length = want.length!;
    this.out.push({
      // Its own copy (bufferFor) when the compressed data spanned host clusters or had gone by.
      copied: want.buf ? want.buf.length : 0,
      decode: async () => {
        const cluster = await decompressCluster(this.header.compressionType, input, this.cs, want.start);
        this.leases.release(input);
        want.consumedEnd = want.start + cluster.consumed;
        return { offset: guestOffset, length, data: cluster.data.subarray(0, length) };
      },
    });
  }

  /** A buffer of its own for a want's bytes; a compressed cluster's counts against MAX_COMPRESSED_COPIES. */
  private bufferFor(want: Want): Buffer {
    if (want.kind === 'compressed') this.countCompressedCopy(want);
    return Buffer.alloc(want.end - want.start);
  }

  /** Counts a compressed cluster's copy against MAX_COMPRESSED_COPIES; refuses the image past it. */
  private countCompressedCopy(want: Want): void {
    this.compressedCopies += want.end - want.start;
    if (this.compressedCopies <= MAX_COMPRESSED_COPIES) return;
    throw badInput(
      `qcow2 compressed clusters claim the same host bytes over and over (more than ${MAX_COMPRESSED_COPIES >> 20} MiB of them at once, up to host offset ${hex(want.end)}): one layer never shares clusters, so the image is corrupt; read in one pass it would take too much memory (a seekable source, a local file or an HTTP server with Range requests, reads it cluster by cluster)`,
    );
  }

  /** Refcount blocks are metadata we never need; knowing them keeps them out of scratch. */
  private onRefcountTable(table: Buffer): Promise<void> | void {
    const blocks: number[] = [];
    for (let at = 0; at + 8 <= table.length; at += 8) {
      const hi = table.readUInt32BE(at) & 0x00ffffff;
      const lo = table.readUInt32BE(at + 4) & 0xfffffe00;
      const offset = hi * 2 ** 32 + (lo >>> 0);
      if (offset !== 0 && offset % this.cs === 0 && offset >= this.processedEnd) blocks.push(offset);
    }
    for (const offset of blocks) this.register({ start: offset, end: offset + this.cs, kind: 'metadata', what: 'refcount block', optional: true });
  }

  private emit(extent: Extent): void {
    if (!this.measuring) this.out.push(extent);
  }

  private async onEnd(): Promise<void> {
    const fileSize = this.processedEnd;
    const leftovers = [...this.active, ...this.waiting.takeAll()].sort((a, b) => a.start - b.start);
    this.active = [];
    for (const want of leftovers) {
      if (want.optional) continue;
      if (want.mayBeShort && want.start < fileSize) {
        await this.complete(want, (want.buf ?? Buffer.alloc(0)).subarray(0, fileSize - want.start));
        continue;
      }
      throw badInput(
        `qcow2 ${describeWant(want)} at host offset ${hex(want.start)} (+${want.end - want.start} bytes) lies past the end of the ${fileSize}-byte image: the image is truncated or corrupt`,
      );
    }
  }
}

/** Whether the queue holds only ready extents: nothing decoding, no work on passed bytes. */
function onlyExtents(out: Queued[]): boolean {
  for (const item of out) if (!('offset' in item)) return false;
  return true;
}

/** Whether work on passed bytes is queued from `head` on: it must run before the next host clusters are read. */
function stepQueued(out: Queued[], head: number): boolean {
  for (let i = head; i < out.length; i++) if ('step' in out[i]!) return true;
  return false;
}
