/**
 * A pass over the raw tar blocks in front of tar-stream, for what tar-stream cannot see:
 *
 * - GNU "old" sparse entries (typeflag 'S', what `tar --sparse` writes in the default GNU
 *   format). Their map lives in header bytes tar-stream does not expose, and when a file has
 *   more than four data segments the map continues in extension blocks that are NOT counted in
 *   the entry size, which would throw tar-stream off the block grid. We take the map out, drop
 *   the extension blocks, and hand tar-stream an ordinary regular-file header instead.
 * - PAX sparse 0.0 maps, which repeat the keys GNU.sparse.offset / GNU.sparse.numbytes
 *   (tar-stream keeps only the last pair).
 * - The raw typeflag of entries tar-stream reports as `type: null`, so we can say what we skipped.
 *
 * Facts are keyed by the header's byte offset in the stream tar-stream receives, which
 * tar-stream exposes as `entry.offset`. Data passes through unchanged and unbuffered; the pass
 * tracks sizes exactly as tar-stream does so both stay on the same block grid.
 */
import { Transform, type TransformCallback } from 'node:stream';

export interface SparseSegment {
  offset: number;
  length: number;
}

export interface EntryFacts {
  /** The raw typeflag character ('\0' shown as '0'). */
  typeflag: string;
  /** GNU old-format sparse entry: its data map and real size. */
  gnuSparse?: { map: SparseSegment[]; realSize: number };
  /** PAX sparse 0.0: every GNU.sparse.offset/numbytes pair in order. */
  pax00Map?: SparseSegment[];
}

const BLOCK = 512;
/** tar-stream refuses longer PAX / long-name headers; we stop looking at the same point. */
const MAX_META_SIZE = 4 * 1024 * 1024;
/** Bound on GNU sparse extension blocks (21 segments each) so a hostile map cannot grow without end. */
const MAX_SPARSE_SEGMENTS = 1 << 20;

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

/** tar's numeric field: octal text, or base-256 when the high bit of the first byte is set (as tar-stream reads it). */
function decodeTarNumber(block: Buffer, offset: number, length: number): number | null {
  const field = block.subarray(offset, offset + length);
  if (field[0]! & 0x80) {
    if (field[0] !== 0x80) return null; // negative numbers are never valid sizes or offsets
    let value = 0;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    return Number.isSafeInteger(value) ? value : null;
  }
  let start = 0;
  while (start < field.length && field[start] === 0x20) start++;
  let end = field.indexOf(0x20, start);
  if (end < 0) end = field.length;
  while (start < end && field[start] === 0) start++;
  if (start === end) return 0;
  const value = parseInt(field.subarray(start, end).toString('latin1'), 8);
  return Number.isSafeInteger(value) ? value : null;
}

/** Whether a 512-byte block is a tar header: its checksum adds up (and it is not all zeros). */
export function isTarHeaderBlock(block: Buffer): boolean {
  if (block.length < BLOCK) return false;
  const checksum = headerChecksum(block);
  return checksum !== 8 * 0x20 && checksum === decodeTarNumber(block, 148, 8);
}

/** The header checksum as tar computes it: every byte, the checksum field counted as spaces. */
function headerChecksum(block: Buffer): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += block[i]!;
  return sum;
}

function writeHeaderChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
}

/** Reads up to `count` (offset, numbytes) pairs of 24 bytes each; stops at the first empty one. */
function readSparsePairs(block: Buffer, start: number, count: number, into: SparseSegment[]): boolean {
  for (let k = 0; k < count; k++) {
    const at = start + k * 24;
    if (block[at] === 0) return true;
    const offset = decodeTarNumber(block, at, 12);
    const length = decodeTarNumber(block, at + 12, 12);
    if (offset === null || length === null) return false;
    into.push({ offset, length });
  }
  return true;
}

/** Whether an entry's final name (a PAX sparse name or path, else a GNU long name, else the header's) ends in "/". */
function endsWithSlash(paxPath: string | undefined, longName: Buffer | null, block: Buffer): boolean {
  if (paxPath) return paxPath.endsWith('/');
  if (longName && longName.length > 0) return longName[longName.length - 1] === 0x2f;
  const name = block.subarray(0, 100);
  const nameEnd = name.indexOf(0);
  return name[(nameEnd < 0 ? 100 : nameEnd) - 1] === 0x2f;
}

/** PAX records in order, duplicates kept ("<len> key=value\n"). Malformed input ends the list, as in tar-stream. */
function paxRecords(data: Buffer): Array<[string, string]> {
  const records: Array<[string, string]> = [];
  let rest = data;
  while (rest.length) {
    const space = rest.indexOf(0x20);
    if (space < 0) break;
    const len = parseInt(rest.subarray(0, space).toString('latin1'), 10);
    if (!len || len > rest.length) break;
    const record = rest.subarray(space + 1, len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq < 0) break;
    records.push([record.slice(0, eq), record.slice(eq + 1)]);
    rest = rest.subarray(len);
  }
  return records;
}

export class TarPrepass extends Transform {
  /** Facts per entry, keyed by the header's offset in our output. The consumer deletes what it reads. */
  readonly facts = new Map<number, EntryFacts>();

  private outPos = 0;
  /** Bytes received so far (our output drops GNU sparse extension blocks, so the two differ). */
  private inPos = 0;
  private block = Buffer.alloc(BLOCK);
  private blockLen = 0;
  /** Bytes to pass on untouched (entry data and padding). */
  private skip = 0;
  /** A PAX header's data being read (also passed on). */
  private meta: { kind: 'x' | 'g' | 'L'; remaining: number; parts: Buffer[]; size: number } | null = null;
  /** The name a GNU long-name header gave the next entry (tar-stream applies it, then a PAX path over it). */
  private longName: Buffer | null = null;
  /** A GNU sparse header waiting for its extension blocks. */
  private sparse: { header: Buffer; map: SparseSegment[] } | null = null;
  /** After something we do not understand, stay out of the way and let tar-stream report it. */
  private passthrough = false;
  /**
   * Past the end-of-archive marker (a zero block where a header would be): what follows is not
   * passed on. GNU tar and Go's archive/tar (CDI's) stop there too; tar-stream would read on, so
   * `cat a.tar b.tar` would extract entries that `tar -tf` does not list.
   */
  private ended = false;
  private globalPax: Array<[string, string]> = [];
  private localPax: Array<[string, string]> | null = null;

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    try {
      this.consume(chunk);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.ended) return callback();
    // A truncated archive: hand on what we hold so tar-stream reports the unexpected end.
    if (this.sparse) this.emit_(this.sparse.header);
    if (this.blockLen) this.emit_(Buffer.from(this.block.subarray(0, this.blockLen)));
    callback();
  }

  private emit_(data: Buffer): void {
    this.outPos += data.length;
    this.push(data);
  }

  private consume(chunk: Buffer): void {
    const chunkAt = this.inPos;
    this.inPos += chunk.length;
    let i = 0;
    while (i < chunk.length) {
      if (this.ended) return;
      if (this.passthrough) {
        this.emit_(chunk.subarray(i));
        return;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.emit_(chunk.subarray(i, i + n));
        this.skip -= n;
        i += n;
        continue;
      }
      if (this.meta) {
        const n = Math.min(this.meta.remaining, chunk.length - i);
        const part = chunk.subarray(i, i + n);
        this.meta.parts.push(Buffer.from(part));
        this.emit_(part);
        this.meta.remaining -= n;
        i += n;
        if (this.meta.remaining === 0) this.finishMeta();
        continue;
      }
      const n = Math.min(BLOCK - this.blockLen, chunk.length - i);
      chunk.copy(this.block, this.blockLen, i, i + n);
      this.blockLen += n;
      i += n;
      if (this.blockLen === BLOCK) {
        this.blockLen = 0;
        const block = Buffer.from(this.block);
        if (this.sparse) this.sparseExtension(block);
        else this.header(block, chunkAt + i - BLOCK);
      }
    }
  }

  private finishMeta(): void {
    const meta = this.meta!;
    this.meta = null;
    this.skip = padding(meta.size);
    if (meta.kind === 'L') {
      const data = Buffer.concat(meta.parts);
      const end = data.indexOf(0);
      this.longName = end < 0 ? data : data.subarray(0, end);
      return;
    }
    const records = paxRecords(Buffer.concat(meta.parts));
    if (meta.kind === 'g') this.globalPax = records;
    else this.localPax = [...this.globalPax, ...records]; // tar-stream merges the global header into each local one
  }

  /** `at`: the block's offset in the archive, for messages. */
  private header(block: Buffer, at: number): void {
    const checksum = headerChecksum(block);
    if (checksum === 8 * 0x20) {
      this.emit_(block); // an empty block: the end-of-archive marker
      this.ended = true;
      return;
    }
    if (checksum !== decodeTarNumber(block, 148, 8)) {
      this.passthrough = true; // tar-stream reports the bad checksum
      this.emit_(block);
      return;
    }
    const size = decodeTarNumber(block, 124, 12);
    if (size === null) {
      // A header that adds up but has no size: tar-stream (with allowUnknownFormat) hands out an
      // entry of size null whose data never ends, and the extraction would wait forever.
      throw new Error(`the entry header at byte ${at} has a size field that is not a number (the archive is damaged or was not made by tar)`);
    }
    const typeflag = String.fromCharCode(block[156] || 0x30);
    switch (typeflag) {
      case 'x':
      case 'g':
        this.emit_(block);
        if (size > MAX_META_SIZE) {
          this.passthrough = true; // tar-stream rejects it
          return;
        }
        if (size === 0) return; // tar-stream reads no records from an empty PAX header
        this.meta = { kind: typeflag, remaining: size, parts: [], size };
        return;
      case 'L':
      case 'N': // old GNU long name: tar-stream reads it as a long-path header too
        this.emit_(block);
        if (size > MAX_META_SIZE) {
          this.passthrough = true; // tar-stream rejects it
          return;
        }
        this.longName = Buffer.alloc(0);
        if (size > 0) this.meta = { kind: 'L', remaining: size, parts: [], size };
        return;
      case 'K':
        this.emit_(block);
        this.skip = size + padding(size);
        return;
      case 'S': {
        const map: SparseSegment[] = [];
        if (!readSparsePairs(block, 386, 4, map)) {
          this.passthrough = true;
          this.facts.set(this.outPos, { typeflag: 'S' });
          this.emit_(block);
          return;
        }
        if (block[482]) this.sparse = { header: block, map };
        else this.emitSparseHeader(block, map);
        return;
      }
      default:
        this.entryHeader(block, typeflag, size);
    }
  }

  private sparseExtension(block: Buffer): void {
    const sparse = this.sparse!;
    if (!readSparsePairs(block, 0, 21, sparse.map) || sparse.map.length > MAX_SPARSE_SEGMENTS) {
      // Unreadable map: hand tar-stream the header as is; it reports an entry of unknown type
      // that the extractor refuses, and the stray block then fails its header check.
      this.sparse = null;
      this.passthrough = true;
      this.facts.set(this.outPos, { typeflag: 'S' }); // the extractor refuses it by name
      this.emit_(sparse.header);
      this.emit_(block);
      return;
    }
    if (block[504]) return; // more extension blocks follow
    this.sparse = null;
    this.emitSparseHeader(sparse.header, sparse.map);
  }

  /** Records the map and turns the 'S' header into a regular-file one (same size: the stored data). */
  private emitSparseHeader(header: Buffer, map: SparseSegment[]): void {
    const realSize = decodeTarNumber(header, 483, 12);
    const out = Buffer.from(header);
    out[156] = 0x30;
    writeHeaderChecksum(out);
    // Without a readable real size the extractor sees no map and refuses the entry.
    this.facts.set(this.outPos, realSize === null ? { typeflag: 'S' } : { typeflag: 'S', gnuSparse: { map, realSize } });
    this.entryHeader(out, 'S', decodeTarNumber(header, 124, 12)!, true);
  }

  private entryHeader(block: Buffer, typeflag: string, headerSize: number, recorded = false): void {
    const pax = this.localPax;
    const longName = this.longName;
    this.localPax = null;
    this.longName = null;
    let size = headerSize;
    // A key given twice counts as tar-stream counts it: the last one.
    const lastPax = (key: string) => pax?.filter(([k]) => k === key).pop()?.[1];
    const paxSize = lastPax('size');
    // GNU tar's PAX sparse 1.0 keeps the real name in GNU.sparse.name alone (no path record), and
    // the extractor names the file by it.
    const paxPath = lastPax('GNU.sparse.name') ?? lastPax('path');
    if (paxSize) size = parseInt(paxSize, 10); // tar-stream's own rule
    if (!Number.isSafeInteger(size) || size < 0) {
      this.passthrough = true; // tar-stream reports "Invalid header"
      this.emit_(block);
      return;
    }

    const pax00: SparseSegment[] = [];
    let pendingOffset: number | null = null;
    for (const [key, value] of pax ?? []) {
      if (key === 'GNU.sparse.offset') pendingOffset = Number(value);
      else if (key === 'GNU.sparse.numbytes' && pendingOffset !== null) {
        pax00.push({ offset: pendingOffset, length: Number(value) });
        pendingOffset = null;
      }
    }
    if (!recorded) {
      const facts: EntryFacts = { typeflag };
      if (pax00.length) facts.pax00Map = pax00;
      if (pax00.length || !'0125'.includes(typeflag)) this.facts.set(this.outPos, facts);
    }

    // A directory has no data, whatever its size field says (GNU tar, Go). tar-stream skips none
    // for a type-5 entry, but reads data for a regular-file entry named "x/" (the V7 way of
    // writing a directory): that entry's size is set to 0 here, so both parsers agree.
    // The name is the one tar-stream hands on: a PAX path, else a GNU long name, else the
    // header's; the header's own field holds only the first 100 bytes of a long name, which
    // may well end in "/" in the middle of a file's path.
    const flag = block[156];
    const v7Directory = (flag === 0 || flag === 0x30) && endsWithSlash(paxPath, longName, block);
    if (v7Directory && size > 0) {
      if (paxSize) {
        // tar-stream takes a PAX size over the header's and will read that much data: the
        // extractor drains it, and this pass skips it too, to stay on tar-stream's block grid.
        this.emit_(block);
        this.skip = size + padding(size);
        return;
      }
      block.write('00000000000\0', 124, 'latin1');
      writeHeaderChecksum(block);
    }
    this.emit_(block);
    if (flag !== 0x35 && !v7Directory) this.skip = size + padding(size);
  }
}
