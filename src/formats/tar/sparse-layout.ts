/**
 * Where a regular file's stored bytes go in the extracted file. A plain file's data is the
 * file; a GNU sparse file (old GNU headers, or PAX sparse 0.0, 0.1 and 1.0) stores only its
 * data segments, back to back, with a map saying where each belongs and the real size.
 */
import { badInput } from '../../errors.js';
import { quoteText } from '../../util/quote-text.js';
import type { EntryFacts, SparseSegment } from './tar-prepass.js';

/** Names longer than this are shortened in messages, so the reason after them stays in view. */
const LONGEST_QUOTED_NAME = 120;

/**
 * How entries are named in messages: quoted, so odd names stay on one line, and a very long name
 * shortened to its start and end (a 5000-character name must not fill pod mode's 4096-byte
 * termination message before the reason).
 */
export function quoteEntry(name: string): string {
  if (name.length <= LONGEST_QUOTED_NAME) return quoteText(name);
  return `${quoteText(`${name.slice(0, 60)}…${name.slice(-40)}`)} (${name.length} characters)`;
}

export type { SparseSegment };

export interface FileLayout {
  /** The member name to extract to (PAX sparse files carry it in GNU.sparse.name). */
  name: string;
  /** Size of the extracted file. */
  realSize: number;
  /** Null for a plain file; otherwise the segments, in order, that the data fills. */
  segments: SparseSegment[] | null;
  /** PAX sparse 1.0: the map is at the start of the entry data, read by Pax1MapReader. */
  mapInData: boolean;
}

/** Bound on map entries held in memory (a GNU map entry costs ~24 bytes of archive each). */
const MAX_SEGMENTS = 1 << 20;

export function fileLayout(name: string, size: number, pax: Record<string, string> | null, facts: EntryFacts | undefined): FileLayout {
  const bad = (why: string) => badInput(`archive entry ${quoteEntry(name)}: invalid GNU sparse file: ${why}`);
  const number = (key: string): number => {
    const text = pax?.[key];
    if (text === undefined || !/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw bad(`${key} is ${text === undefined ? 'missing' : quoteEntry(text)}`);
    return Number(text);
  };

  if (facts?.typeflag === 'S') {
    if (!facts.gnuSparse) throw bad('unreadable sparse header');
    return { name, realSize: facts.gnuSparse.realSize, segments: checkSegments(facts.gnuSparse.map, facts.gnuSparse.realSize, size, bad), mapInData: false };
  }
  const major = pax?.['GNU.sparse.major'];
  const minor = pax?.['GNU.sparse.minor'];
  const sparseName = pax?.['GNU.sparse.name'] ?? name;
  if (major !== undefined || minor !== undefined) {
    // The values are the archive's text: quoted, so a newline in them cannot split the line.
    if (major !== '1' || minor !== '0') throw bad(`unsupported PAX sparse version ${quoteEntry(`${major ?? '(none)'}.${minor ?? '(none)'}`)}`);
    const realSize = number('GNU.sparse.realsize');
    return { name: sparseName, realSize, segments: [], mapInData: true };
  }
  if (pax?.['GNU.sparse.map'] !== undefined) {
    const numbers = pax['GNU.sparse.map'].split(',');
    if (numbers.length % 2 !== 0 || numbers.length / 2 > MAX_SEGMENTS) throw bad('GNU.sparse.map has an odd or too large number of fields');
    const segments: SparseSegment[] = [];
    for (let i = 0; i < numbers.length; i += 2) segments.push({ offset: parseCount(numbers[i]!, bad), length: parseCount(numbers[i + 1]!, bad) });
    const realSize = number('GNU.sparse.size');
    return { name: sparseName, realSize, segments: checkSegments(segments, realSize, size, bad), mapInData: false };
  }
  if (facts?.pax00Map) {
    const realSize = number('GNU.sparse.size');
    if (facts.pax00Map.length !== number('GNU.sparse.numblocks')) throw bad('GNU.sparse.numblocks does not match the map');
    return { name: sparseName, realSize, segments: checkSegments(facts.pax00Map, realSize, size, bad), mapInData: false };
  }
  return { name, realSize: size, segments: null, mapInData: false };
}

function parseCount(text: string, bad: (why: string) => Error): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw bad(`map value ${quoteEntry(text)} is not a byte count`);
  return Number(text);
}

/** Segments must be in order, not overlap, stay within the real size and add up to the stored data. */
function checkSegments(segments: SparseSegment[], realSize: number, storedSize: number, bad: (why: string) => Error): SparseSegment[] {
  let end = 0;
  let total = 0;
  for (const { offset, length } of segments) {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < end) throw bad('map segments overlap or are out of order');
    end = offset + length;
    if (end > realSize) throw bad(`map reaches byte ${end}, past the real size ${realSize}`);
    total += length;
  }
  if (total !== storedSize) throw bad(`map describes ${total} data bytes but the entry stores ${storedSize}`);
  return segments;
}

/**
 * PAX sparse 1.0 keeps the map as decimal lines ("count\n" then "offset\nlength\n" pairs) at
 * the start of the data, padded to a 512-byte block. Fed the entry's chunks, it returns the
 * data bytes that follow the map once it is complete.
 */
export class Pax1MapReader {
  readonly segments: SparseSegment[] = [];
  private count = -1;
  private pendingOffset = -1;
  private line = '';
  /** Map bytes consumed so far, including the padding once the map is complete. */
  consumed = 0;
  private paddingLeft = -1;

  constructor(private readonly bad: (why: string) => Error) {}

  get done(): boolean {
    return this.paddingLeft === 0;
  }

  /** Consumes map bytes from `chunk`; returns the rest (data), or an empty buffer while the map continues. */
  feed(chunk: Buffer): Buffer {
    let i = 0;
    while (i < chunk.length && this.paddingLeft !== 0) {
      if (this.paddingLeft > 0) {
        const n = Math.min(this.paddingLeft, chunk.length - i);
        this.paddingLeft -= n;
        this.consumed += n;
        i += n;
        continue;
      }
      const byte = chunk[i++]!;
      this.consumed++;
      if (byte !== 0x0a) {
        if (byte < 0x30 || byte > 0x39 || this.line.length >= 20) throw this.bad('PAX sparse map is not decimal numbers');
        this.line += String.fromCharCode(byte);
        continue;
      }
      const value = Number(this.line);
      this.line = '';
      if (!Number.isSafeInteger(value)) throw this.bad('PAX sparse map value out of range');
      if (this.count < 0) {
        if (value > MAX_SEGMENTS) throw this.bad(`PAX sparse map has ${value} segments`);
        this.count = value;
      } else if (this.pendingOffset < 0) this.pendingOffset = value;
      else {
        this.segments.push({ offset: this.pendingOffset, length: value });
        this.pendingOffset = -1;
      }
      if (this.count >= 0 && this.segments.length === this.count && this.pendingOffset < 0) {
        this.paddingLeft = (512 - (this.consumed % 512)) % 512;
      }
    }
    return chunk.subarray(i);
  }
}

/**
 * Places an entry's stored bytes, chunk by chunk, at their offsets in the real file: the whole
 * data of a plain file from 0, a sparse file's data segment by segment (after the PAX 1.0 map
 * at the start of its data). Holes are never handed out: the file (or stream) has them already.
 */
export class SparsePlacer {
  private readonly mapReader: Pax1MapReader | null;
  private segments: SparseSegment[] | null;
  private segment = 0;
  /** Bytes of the current segment (or of a plain file) already placed. */
  private within = 0;

  constructor(
    private readonly layout: FileLayout,
    /** The entry's data size as stored in the archive (map included). */
    private readonly stored: number,
    private readonly bad: (why: string) => Error,
  ) {
    this.mapReader = layout.mapInData ? new Pax1MapReader(bad) : null;
    this.segments = layout.segments;
  }

  /** Calls `at` for each piece of `chunk` with its offset in the real file, in increasing order. */
  place(chunk: Buffer, at: (offset: number, data: Buffer) => void): void {
    let data = chunk;
    if (this.mapReader && !this.mapReader.done) {
      data = this.mapReader.feed(chunk);
      if (!this.mapReader.done) return;
      if (this.segments?.length === 0) this.segments = checkSegments(this.mapReader.segments, this.layout.realSize, this.stored - this.mapReader.consumed, this.bad);
    }
    if (this.segments === null) {
      if (data.length > 0) at(this.within, data);
      this.within += data.length;
      return;
    }
    while (data.length > 0) {
      const current = this.segments[this.segment];
      if (!current) throw this.bad('more data than the map describes');
      const n = Math.min(current.length - this.within, data.length);
      if (n > 0) at(current.offset + this.within, data.subarray(0, n));
      data = data.subarray(n);
      this.within += n;
      if (this.within === current.length) {
        this.segment++;
        this.within = 0;
      }
    }
  }

  /** After the entry's last chunk. */
  finish(): void {
    if (this.mapReader && !this.mapReader.done) throw this.bad('the entry ends inside its PAX sparse map');
  }
}
