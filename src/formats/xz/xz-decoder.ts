import { ChangeSignal } from '../../util/change-signal.js';
import { Duplex } from 'node:stream';
import { availableParallelism } from 'node:os';
import { DecodeJob, type DecodeJobLimits } from './decode-job.js';
import { PendingBytes } from './pending-bytes.js';
import { PoolLeases, chunkPool } from '../../util/buffer-pool.js';
import {
  STREAM_FOOTER_SIZE,
  STREAM_HEADER_SIZE,
  XzFormatError,
  blockHeaderSize,
  blockSizes,
  encodeFooter,
  encodeIndex,
  isStreamHeaderStart,
  parseBlockHeader,
  parseStreamHeader,
  type IndexRecord,
  type StreamHeader,
} from './xz-container.js';

/**
 * Blocks decoded at once. `xz -T` (and xz ≥ 5.6 by default) writes blocks of 3× the dictionary
 * with their sizes in the headers: each can be decoded on its own thread, as `xz -T0 -d` does.
 * More blocks than cores keep the cores busy while some wait for the writer. Measured on 2 cores
 * (bench/qcow2.sh, qcow2.xz → raw, 3 MiB blocks): 2 at once 1.96 s, 3 1.80 s, 4 1.73 s, 6 1.57 s;
 * the CDI path (`xz -dc` then qemu-img) 2.52 s.
 */
const PARALLEL_BLOCKS = Math.max(6, Math.min(8, 3 * availableParallelism()));
/** Dictionaries of the blocks in flight together stay under this (xz -9 blocks: one at a time). */
const DICTIONARY_BUDGET = 64 << 20;
/**
 * Decoded and compressed bytes the blocks in flight may hold together. A block that is not first
 * in line can decode ahead only as far as its buffer: a whole `xz -T -6` block (24 MiB) needs room
 * for all of it to overlap with the one before (qcow2.xz bench re-compressed with `xz -T2 -6`:
 * 4 MiB ahead 1.93 s, whole blocks in 64 / 96 / 128 MiB 2.16 / 1.67 / 1.56 s; the CDI path 2.46 s).
 * 128 MiB until 2026-11-28, when the whole process's peak passed 200 MiB on blocks that decode
 * fast (zeros) or a writer that falls behind: peak RSS with 128 / 96 / 80 / 64 MiB, 3 runs each,
 * the same bench image as `xz -T2 -6` 208-228 / 179-187 / 168-183 / 126-132 MB in 1.31-1.44 /
 * 1.36-1.43 / 1.43-1.47 / 2.05-2.21 s; 508 MiB of zeros 193-214 / 153-165 MB; a 508 MiB qcow2
 * preallocated with metadata 217-259 / 174-198 MB in the same time.
 */
const BUFFER_BUDGET = 96 << 20;
const MiB = 1 << 20;
/**
 * The largest LZMA2 dictionary decoded (liblzma allocates it whole). The file declares it, so a
 * few hundred bytes could otherwise ask for 4 GiB; `xz -9` (and 7-Zip's strongest xz) use 64 MiB.
 */
const MAX_DICTIONARY = 256 * MiB;

function checkDictionary(size: number): void {
  if (size > MAX_DICTIONARY) {
    throw new XzFormatError(
      `needs a ${Math.ceil(size / MiB)} MiB dictionary to decode, more than the ${MAX_DICTIONARY / MiB} MiB cdi-importer allows (xz -9 uses 64 MiB): recompress it with xz -9 or a lower preset`,
    );
  }
}

/** How far one block may run ahead: all of it (at least 4 MiB), up to 24 MiB decoded and 16 MiB compressed. */
function blockLimits(uncompressed: number, compressed: number): DecodeJobLimits {
  return {
    outputAhead: Math.min(Math.max(uncompressed, 4 * MiB), 24 * MiB),
    inputAhead: Math.min(Math.max(compressed, 4 * MiB), 16 * MiB),
  };
}
/**
 * Blocks at most this big (decoded, and compressed with header and check) share one decoder with
 * the small blocks that follow them, up to this much in all: a decoder per block costs ~0.3 ms to
 * set up, so an `xz --block-size=4` file of 307 200 blocks took 86 s (`xz -dc` 0.2 s). Blocks of
 * `xz -T -0` (768 KiB) and above still get a decoder each, and decode in parallel.
 */
const SMALL_GROUP = 256 << 10;
/** The single decoder of a stream whose blocks carry no sizes (single-threaded xz): just enough to keep it busy. */
const SERIAL_LIMITS: DecodeJobLimits = { outputAhead: 4 << 20, inputAhead: 2 << 20 };

/** Small consecutive blocks handed to one decoder as one stream: its blocks so far, still open for more. */
interface SmallGroup {
  job: DecodeJob;
  records: IndexRecord[];
  header: StreamHeader;
  dictionarySize: number;
  uncompressed: number;
  compressed: number;
}

type State =
  | { kind: 'stream-header' }
  | { kind: 'block-start'; header: StreamHeader; records: IndexRecord[]; group?: SmallGroup }
  | { kind: 'block-body'; header: StreamHeader; records: IndexRecord[]; job: DecodeJob; remaining: number; trailer?: Buffer; group?: SmallGroup }
  | { kind: 'index'; header: StreamHeader; records: IndexRecord[] }
  | { kind: 'footer'; header: StreamHeader; indexSize: number }
  | { kind: 'padding'; zeros: number }
  | { kind: 'serial'; job: DecodeJob };

/** The index and footer that close a stream holding just these blocks. */
function streamTrailer(header: StreamHeader, records: IndexRecord[]): Buffer {
  const index = encodeIndex(records);
  return Buffer.concat([index, encodeFooter(index.length, header.flags)]);
}

/** Ends a group's stream after its last block: the decoder then checks the index against what it decoded. */
function closeGroup(group: SmallGroup): void {
  group.job.end(streamTrailer(group.header, group.records));
}

/**
 * An .xz decoder (concatenated streams and stream padding included) that decodes up to
 * PARALLEL_BLOCKS blocks (or runs of small blocks) at a time when the encoder recorded block
 * sizes, and falls back to one liblzma stream decoder when it did not. Each block (or run) is
 * handed to liblzma as a stream of its own, so liblzma checks its integrity checks and sizes; the
 * stream's own index and footer are checked here against the blocks seen. Output keeps the
 * input's order and is bounded in memory.
 */
export class XzDecoder extends Duplex {
  /**
   * Pooled input chunks (a file source reads into them) go back to the pool once the splitter and
   * every decoder fed from them are done with them.
   */
  private readonly leases = new PoolLeases(chunkPool);
  private readonly release = (input: Buffer) => this.leases.release(input);
  /** Input chunks whose bytes have all been routed; released once routing stops (views of them may be in hand until then). */
  private readonly routed: Buffer[] = [];
  private readonly pending = new PendingBytes((chunk) => this.routed.push(chunk));
  private state: State = { kind: 'stream-header' };
  private readonly jobs: { job: DecodeJob; dictionarySize: number; buffers: number }[] = [];
  private inputEnded = false;
  private pumping = false;
  private readonly changes = new ChangeSignal();
  /** liblzma decoders started so far: one per large block, one per run of small blocks. */
  decodersStarted = 0;
  private demand: (() => void) | undefined;

  constructor() {
    super({ readableHighWaterMark: 1 << 20, writableHighWaterMark: 1 << 20 });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.leases.hold(chunk);
    this.pending.push(chunk);
    this.route().then(() => {
      for (const done of this.routed.splice(0)) this.release(done);
      callback();
    }, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    try {
      this.endInput();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _read(): void {
    const resume = this.demand;
    this.demand = undefined;
    resume?.();
    if (!this.pumping) {
      this.pumping = true;
      void this.pump();
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    for (const { job } of this.jobs) job.stop();
    if (this.state.kind === 'block-body' || this.state.kind === 'serial') this.state.job.stop();
    this.changes.notify();
    callback(error);
  }

  /** Moves pending bytes to where they belong, as far as they go. */
  private async route(): Promise<void> {
    for (;;) {
      // Destroyed (the reader stopped early: info has its header, an import was refused): the
      // rest of what is pending must not start decoders, which would run outside every budget.
      if (this.destroyed) return;
      const state = this.state;
      switch (state.kind) {
        case 'stream-header': {
          const seen = Buffer.from(Array.from({ length: Math.min(6, this.pending.length) }, (_, i) => this.pending.at(i)));
          if (!isStreamHeaderStart(seen)) throw new XzFormatError('data after the end of an xz stream does not start with the xz magic bytes');
          if (this.pending.length < STREAM_HEADER_SIZE) return;
          this.state = { kind: 'block-start', header: parseStreamHeader(this.pending.take(STREAM_HEADER_SIZE)), records: [] };
          break;
        }
        case 'block-start': {
          if (this.pending.length < 1) return;
          const first = this.pending.at(0);
          if (first === 0) {
            if (state.group) closeGroup(state.group);
            this.state = { kind: 'index', header: state.header, records: state.records };
            break;
          }
          const size = blockHeaderSize(first);
          if (this.pending.length < size) return;
          const blockHeader = this.pending.take(size);
          const info = parseBlockHeader(blockHeader);
          checkDictionary(info.dictionarySize);
          if (info.compressedSize === undefined || info.uncompressedSize === undefined) {
            if (state.records.length > 0) {
              throw new XzFormatError('this xz stream mixes blocks with and without recorded sizes, which no xz tool writes and cdi-importer does not decode; decompress it with `xz -d` before importing');
            }
            // Single-threaded xz: block ends are known only by decoding, so one decoder takes the rest.
            const job = await this.startJob(() => new DecodeJob(SERIAL_LIMITS, this.release), info.dictionarySize, 0);
            await job.write(state.header.bytes);
            await this.feed(job, blockHeader);
            this.state = { kind: 'serial', job };
            break;
          }
          const sizes = blockSizes(info, state.header.checkSize);
          const record = { unpadded: sizes.unpadded, uncompressed: info.uncompressedSize };
          state.records.push(record);
          const remaining = sizes.total - size;
          const small = info.uncompressedSize <= SMALL_GROUP && sizes.total <= SMALL_GROUP;
          let group = state.group;
          if (
            group &&
            !(small && info.dictionarySize <= group.dictionarySize && group.uncompressed + info.uncompressedSize <= SMALL_GROUP && group.compressed + sizes.total <= SMALL_GROUP)
          ) {
            closeGroup(group);
            group = undefined;
          }
          if (group) {
            group.records.push(record);
            group.uncompressed += info.uncompressedSize;
            group.compressed += sizes.total;
            await this.feed(group.job, blockHeader);
            this.state = { kind: 'block-body', header: state.header, records: state.records, job: group.job, remaining, group };
            break;
          }
          const limits = blockLimits(info.uncompressedSize, info.compressedSize);
          const job = await this.startJob(() => new DecodeJob(limits, this.release), info.dictionarySize, limits.outputAhead + limits.inputAhead);
          await job.write(Buffer.concat([state.header.bytes, blockHeader]));
          if (small) {
            group = { job, records: [record], header: state.header, dictionarySize: info.dictionarySize, uncompressed: info.uncompressedSize, compressed: sizes.total };
            this.state = { kind: 'block-body', header: state.header, records: state.records, job, remaining, group };
          } else {
            this.state = { kind: 'block-body', header: state.header, records: state.records, job, remaining, trailer: streamTrailer(state.header, [record]) };
          }
          break;
        }
        case 'block-body': {
          if (state.remaining > 0) {
            if (this.pending.length === 0) return;
            const part = this.pending.takeSome(state.remaining);
            state.remaining -= part.length;
            await this.feed(state.job, part);
          }
          if (state.remaining === 0) {
            // A small block's decoder stays open for the next block; the others end with their block.
            if (state.trailer) state.job.end(state.trailer);
            this.state = { kind: 'block-start', header: state.header, records: state.records, group: state.group };
          }
          break;
        }
        case 'index': {
          const expected = encodeIndex(state.records);
          if (this.pending.length < expected.length) return;
          if (!this.pending.take(expected.length).equals(expected)) {
            throw new XzFormatError('the stream index does not match its blocks');
          }
          this.state = { kind: 'footer', header: state.header, indexSize: expected.length };
          break;
        }
        case 'footer': {
          if (this.pending.length < STREAM_FOOTER_SIZE) return;
          if (!this.pending.take(STREAM_FOOTER_SIZE).equals(encodeFooter(state.indexSize, state.header.flags))) {
            throw new XzFormatError('the stream footer is corrupt or does not match its header');
          }
          this.state = { kind: 'padding', zeros: 0 };
          break;
        }
        case 'padding': {
          state.zeros += this.pending.skipZeros();
          if (this.pending.length === 0) return;
          if (state.zeros % 4 !== 0) throw new XzFormatError('the stream padding is not a multiple of four bytes');
          this.state = { kind: 'stream-header' };
          break;
        }
        case 'serial': {
          while (this.pending.length > 0) await this.feed(state.job, this.pending.takeSome(Infinity));
          return;
        }
      }
    }
  }

  private endInput(): void {
    const state = this.state;
    if (state.kind === 'serial') state.job.end();
    else if (state.kind !== 'padding') throw new XzFormatError(state.kind === 'stream-header' && this.jobs.length === 0 && this.pending.length === 0 ? 'the stream is empty' : 'the data ends in the middle of the stream');
    else if (state.zeros % 4 !== 0) throw new XzFormatError('the stream padding is not a multiple of four bytes');
    this.inputEnded = true;
    this.changes.notify();
  }

  /** Hands a view of the input to a decoder, which releases it once consumed. */
  private feed(job: DecodeJob, input: Buffer): Promise<void> {
    this.leases.hold(input);
    return job.write(input);
  }

  /** Waits until the blocks in flight leave room, then starts a job last in output order. */
  private async startJob(create: () => DecodeJob, dictionarySize: number, buffers: number): Promise<DecodeJob> {
    const sum = (of: (open: (typeof this.jobs)[number]) => number) => this.jobs.reduce((total, open) => total + of(open), 0);
    while (
      this.jobs.length > 0 &&
      (this.jobs.length >= PARALLEL_BLOCKS ||
        sum((open) => open.dictionarySize) + dictionarySize > DICTIONARY_BUDGET ||
        sum((open) => open.buffers) + buffers > BUFFER_BUDGET) &&
      !this.destroyed
    ) {
      await this.changes.wait();
    }
    if (this.destroyed) throw new Error('the xz decoder was stopped');
    const job = create();
    this.decodersStarted++;
    this.jobs.push({ job, dictionarySize, buffers });
    this.changes.notify();
    return job;
  }

  /** Hands decoded chunks on in order while the reader wants them. */
  private async pump(): Promise<void> {
    try {
      for (;;) {
        const job = this.jobs[0]?.job;
        if (this.destroyed) return;
        if (!job) {
          if (this.inputEnded) {
            this.push(null);
            return;
          }
          await this.changes.wait();
          continue;
        }
        const chunk = await job.read();
        if (chunk === null) {
          this.jobs.shift();
          this.changes.notify();
          continue;
        }
        if (!this.push(chunk)) await new Promise<void>((resolve) => (this.demand = resolve));
      }
    } catch (err) {
      this.destroy(err as Error);
    }
  }
}
