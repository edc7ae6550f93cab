/**
 * The bytes of one part of a multipart/form-data body, streamed: the upload-form endpoints
 * (CDI's `formReadCloser`) take the part named `file` and ignore the others. Only the part's
 * headers and a boundary-sized tail are ever held in memory, so a many-GiB image passes through
 * without being buffered.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { BadUploadRequest } from './bad-upload-request.js';
import { chunkPool } from '../util/buffer-pool.js';

/** Part headers larger than this are not a browser or curl form: refuse instead of buffering. */
const MAX_PART_HEADER_BYTES = 16 * 1024;

const SPACE = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;

/** Where a delimiter starts, and whether the bytes after it have been seen (see MultipartFilePart.scan). */
interface Found {
  at: number;
  /** The bytes that decide it have not arrived yet: everything before `at` is data, the rest must wait. */
  pending: boolean;
}

/** The boundary parameter of a `multipart/form-data` Content-Type, or undefined if there is none. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType || !/^\s*multipart\/form-data\s*(;|$)/i.test(contentType)) return undefined;
  // RFC 2046 allows 70 characters; a longer one is taken whole rather than cut (which made its
  // delimiters unfindable: "no part named file").
  const match = /;\s*boundary\s*=\s*(?:"([^"]+)"|([^\s;"]+))/i.exec(contentType);
  return match?.[1] ?? match?.[2];
}

/** The `name` of a part from its headers (`Content-Disposition: form-data; name="file"; ...`). */
function partName(headers: string): string | undefined {
  for (const line of headers.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim().toLowerCase() !== 'content-disposition') continue;
    const match = /;\s*name\s*=\s*(?:"([^"]*)"|([^\s;]+))/i.exec(line.slice(colon + 1));
    return match?.[1] ?? match?.[2];
  }
  return undefined;
}

/** `done`: the wanted part was read; `closed`: the body's closing delimiter came first. */
type State = 'preamble' | 'first-line' | 'headers' | 'skip-part' | 'file-part' | 'done' | 'closed';

/**
 * Transform: multipart body in, the named part's bytes out. Errors (no such part, a body that
 * ends inside the part, oversized headers) are one line naming what is wrong.
 */
export class MultipartFilePart extends Transform {
  /**
   * `\r\n--boundary`: ends every part. The first delimiter may come without the leading CRLF.
   * A form whose first boundary line ends in a bare LF uses LF throughout, as Go's reader
   * (CDI's) accepts: then `\n--boundary`, and part headers end at an empty LF line.
   */
  private delimiter: Buffer;
  private headerEnd = Buffer.from('\r\n\r\n');
  /** Found before the line endings are known: a CRLF delimiter ends in it too. */
  private readonly firstDelimiter: Buffer;
  private buffer: Buffer = Buffer.alloc(0);
  private state: State = 'preamble';
  /** The chunk of the part's bytes being filled (see gather). */
  private out: Buffer | undefined;
  private outUsed = 0;
  /** Names of parts skipped, for the log and the error when the wanted one is missing. */
  readonly skippedParts: string[] = [];

  constructor(boundary: string, private readonly wanted = 'file') {
    super();
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
    this.firstDelimiter = Buffer.from(`\n--${boundary}`);
    // The body starts with the delimiter minus its CRLF; pretend it was there.
    this.buffer = Buffer.from('\r\n');
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.state === 'done' || this.state === 'closed') return callback(); // the epilogue and any later parts are not needed
    if (this.state === 'file-part' && chunk.length >= this.delimiter.length) {
      this.fileData(chunk);
      return callback();
    }
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    try {
      this.consume();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.state === 'file-part') {
      // A delimiter at the very end of the body ends the part, as in Go's reader (no closing `--` needed).
      const found = this.scan(this.buffer, true);
      if (found) {
        this.gather(this.buffer.subarray(0, found.at));
        this.endPart();
      }
    }
    if (this.state === 'done') return callback();
    const skipped = this.skippedParts.length > 0 ? ` (parts found: ${this.skippedParts.join(', ')})` : '';
    callback(
      this.state === 'file-part'
        ? new Error(`the multipart upload ended inside the "${this.wanted}" part: the body was cut short`)
        : new BadUploadRequest(
            `the multipart upload has no part named "${this.wanted}"${skipped}: send the image as the form field "${this.wanted}" (curl -F ${this.wanted}=@disk.img)`,
          ),
    );
  }

  private consume(): void {
    for (;;) {
      switch (this.state) {
        case 'preamble': {
          const at = this.buffer.indexOf(this.firstDelimiter);
          if (at < 0) {
            this.keepTail();
            return;
          }
          // Kept from the line's start: a line that only begins like the boundary is preamble, and the search goes on after it.
          this.buffer = this.buffer.subarray(at);
          this.state = 'first-line';
          break;
        }
        case 'skip-part': {
          const found = this.scan(this.buffer);
          if (!found) {
            this.keepTail();
            return;
          }
          this.buffer = this.buffer.subarray(found.at);
          if (found.pending) return;
          this.buffer = this.buffer.subarray(this.delimiter.length);
          this.state = 'headers';
          break;
        }
        case 'first-line': {
          // The buffer starts at `\n--boundary`. Go's reader (CDI's) takes a line as the first boundary
          // only if nothing but spaces and tabs follows the boundary; its ending says which line endings
          // the whole form uses.
          const after = this.firstDelimiter.length;
          if (this.buffer.length < after + 2) return;
          const closing = this.buffer[after] === DASH && this.buffer[after + 1] === DASH;
          const newline = this.buffer.indexOf(LF, after);
          if (newline < 0) {
            if (this.buffer.length > MAX_PART_HEADER_BYTES) throw new BadUploadRequest('a multipart boundary line does not end: this is not a form as curl -F or a browser sends it');
            return;
          }
          const lineEnd = contentEnd(this.buffer, after, newline);
          const crlf = lineEnd < newline;
          if (closing && onlySpaces(this.buffer, after + 2, lineEnd)) {
            this.buffer = this.buffer.subarray(after);
            this.state = 'headers'; // the closing delimiter right away: an empty form
            break;
          }
          if (closing || !onlySpaces(this.buffer, after, lineEnd)) {
            this.buffer = this.buffer.subarray(1); // not the boundary: preamble, searched on from the next byte
            this.state = 'preamble';
            break;
          }
          if (!crlf) {
            this.delimiter = this.firstDelimiter;
            this.headerEnd = Buffer.from('\n\n');
          }
          this.buffer = this.buffer.subarray(after);
          this.state = 'headers';
          break;
        }
        case 'headers': {
          // After a delimiter: `--` closes the body; otherwise optional whitespace, CRLF, headers.
          if (this.buffer.length < 2) return;
          if (this.buffer[0] === 0x2d && this.buffer[1] === 0x2d) {
            this.state = 'closed';
            this.buffer = Buffer.alloc(0);
            return;
          }
          const newline = this.buffer.indexOf(LF);
          const lineEnd = contentEnd(this.buffer, 0, newline);
          if (newline >= 0 && !onlySpaces(this.buffer, 0, lineEnd)) {
            const line = this.buffer.subarray(0, Math.min(lineEnd, 40)).toString('latin1');
            throw new BadUploadRequest(`a multipart boundary line goes on after the boundary (${JSON.stringify(line)}): this is not a form as curl -F or a browser sends it`);
          }
          const end = this.buffer.indexOf(this.headerEnd);
          if (end < 0) {
            if (this.buffer.length > MAX_PART_HEADER_BYTES) throw new BadUploadRequest(`multipart part headers exceed ${MAX_PART_HEADER_BYTES} bytes: this is not a form as curl -F or a browser sends it`);
            return;
          }
          const headers = this.buffer.subarray(0, end).toString('latin1').replace(/^[ \t]*\r?\n/, '');
          this.buffer = this.buffer.subarray(end + this.headerEnd.length);
          const name = partName(headers) ?? '';
          if (name === this.wanted) {
            this.state = 'file-part';
          } else {
            this.skippedParts.push(name === '' ? '(unnamed)' : name);
            this.state = 'skip-part';
          }
          break;
        }
        case 'file-part': {
          const found = this.scan(this.buffer);
          if (!found) {
            // Everything but a possible partial delimiter at the end is the part's data.
            const safe = this.buffer.length - (this.delimiter.length - 1);
            if (safe > 0) {
              this.gather(this.buffer.subarray(0, safe));
              this.buffer = this.buffer.subarray(safe);
            }
            return;
          }
          this.gather(this.buffer.subarray(0, found.at));
          if (found.pending) this.buffer = this.buffer.subarray(found.at);
          else this.endPart();
          return;
        }
        case 'done':
        case 'closed':
          return;
      }
    }
  }

  /**
   * A chunk inside the wanted part (at least a delimiter long), without copying it onto what was
   * held: only the held tail (shorter than a delimiter) and the chunk's first bytes are joined to
   * look for a delimiter across the seam.
   */
  private fileData(chunk: Buffer): void {
    const tail = this.buffer;
    const keep = this.delimiter.length - 1;
    // A delimiter that starts in the tail is decided by the chunk's first bytes (the chunk is at least a delimiter long).
    const atSeam = tail.length === 0 ? undefined : this.scan(Buffer.concat([tail, chunk.subarray(0, keep + 2)]));
    if (atSeam?.pending && atSeam.at < tail.length) {
      // Not decided even so (a chunk of exactly a delimiter's length): the slow path joins them.
      this.buffer = Buffer.concat([tail, chunk]);
      return this.consume();
    }
    if (atSeam && atSeam.at < tail.length) {
      this.gather(tail.subarray(0, atSeam.at));
      return this.endPart();
    }
    this.gather(tail);
    const found = this.scan(chunk);
    if (found) {
      this.gather(chunk.subarray(0, found.at));
      if (!found.pending) return this.endPart();
      this.buffer = Buffer.from(chunk.subarray(found.at));
      return;
    }
    this.gather(chunk.subarray(0, chunk.length - keep));
    this.buffer = Buffer.from(chunk.subarray(chunk.length - keep));
  }

  /**
   * The first delimiter in `data` as Go's reader (CDI's) decides it: `\r\n--boundary` (`\n--boundary`
   * in a bare-LF form) followed by `--`, a space, a tab or a line end, or by the end of the body
   * (`ended`); followed by anything else it is data (a file may hold the boundary followed by other
   * bytes). Undefined when there is none.
   */
  private scan(data: Buffer, ended = false): Found | undefined {
    const delimiter = this.delimiter;
    for (let at = data.indexOf(delimiter); at >= 0; at = data.indexOf(delimiter, at + 1)) {
      const after = at + delimiter.length;
      if (after === data.length) return { at, pending: !ended };
      const next = data[after];
      if (next === SPACE || next === TAB || next === CR || next === LF) return { at, pending: false };
      if (next === DASH) {
        if (after + 1 === data.length) {
          if (ended) continue; // a lone dash at the end: not a delimiter
          return { at, pending: true };
        }
        if (data[after + 1] === DASH) return { at, pending: false };
      }
    }
    return undefined;
  }

  /**
   * The part's bytes go out in whole pooled 1 MiB chunks counted from the part's start, as a file
   * is read: a qcow2's clusters then never straddle two chunks (which the one-pass reader would
   * have to copy together), and a form costs one copy of the data.
   */
  private gather(data: Buffer): void {
    for (let at = 0; at < data.length; ) {
      this.out ??= chunkPool.take();
      const copied = data.copy(this.out, this.outUsed, at);
      this.outUsed += copied;
      at += copied;
      if (this.outUsed === this.out.length) {
        this.push(this.out);
        this.out = undefined;
        this.outUsed = 0;
      }
    }
  }

  /** Whether the wanted part has been read whole: what follows it in the body is not needed. */
  get partDone(): boolean {
    return this.state === 'done';
  }

  /**
   * The closing delimiter of the wanted part: what is gathered goes out, and the stream ends now
   * rather than at the end of the body, so that fields after the file (and a connection lost
   * while they are sent) do not hold back or fail an image that has all arrived.
   */
  private endPart(): void {
    if (this.out && this.outUsed > 0) this.push(this.out.subarray(0, this.outUsed));
    this.out = undefined;
    this.outUsed = 0;
    this.state = 'done';
    this.buffer = Buffer.alloc(0);
    this.push(null);
  }

  /** While searching for a delimiter, only its length minus one byte can still be part of it. */
  private keepTail(): void {
    const keep = this.delimiter.length - 1;
    if (this.buffer.length > keep) this.buffer = this.buffer.subarray(this.buffer.length - keep);
  }
}

/** Where the line that ends with the LF at `newline` ends without its CR, if it has one after `start`. */
function contentEnd(data: Buffer, start: number, newline: number): number {
  return newline > start && data[newline - 1] === CR ? newline - 1 : newline;
}

/** Whether data[start, end) holds only spaces and tabs (what may follow a boundary on its line). */
function onlySpaces(data: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (data[i] !== SPACE && data[i] !== TAB) return false;
  return true;
}
