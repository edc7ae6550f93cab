/**
 * Mutation fuzzing of the upload server's multipart/form-data reader (src/upload/multipart-file-part.ts):
 * forms as curl -F and browsers send them (CRLF, and the bare-LF forms Go's reader accepts), with
 * binary file parts that hold near-delimiters, mutated around their delimiters and headers, and
 * fed in pieces of every size so that delimiters straddle chunk seams. Accepted outcomes: an
 * error of one line, or the file part's bytes, which must be one contiguous run of the body that
 * holds no delimiter Go's reader would end the part at (nothing invented, dropped, reordered or
 * read across a part's end); an
 * unmutated form must give its file exactly. Never a hang. Shared by the CI test (fixed seed,
 * modest count) and bench/fuzz.ts (long runs).
 */
import { Readable } from 'node:stream';
import { MultipartFilePart } from '../../src/upload/multipart-file-part.js';
import { seeded } from '../qcow2/images.js';
import { pieces, settleWithin, unclearRefusal } from '../support/fuzz-case.js';

const CASE_TIMEOUT_MS = 10_000;
const BOUNDARIES = ['------------------------a1b2c3d4e5f6', 'x', '----WebKitFormBoundary7MA4YWxkTrZu0gW'];

export interface Seed {
  boundary: string;
  body: Buffer;
  /** The file part's bytes (what an unmutated body must give). */
  file: Buffer;
  /** The line ending the form uses throughout. */
  eol: '\r\n' | '\n';
}

/** Forms with a file part among others, in both line-ending styles, with contents that tease the delimiter. */
export function buildSeedForms(): Seed[] {
  const next = seeded(1);
  const seeds: Seed[] = [];
  for (const boundary of BOUNDARIES) {
    for (const eol of ['\r\n', '\n'] as const) {
      const random = Buffer.from(Array.from({ length: 3000 + Math.floor(next() * 5000) }, () => Math.floor(next() * 256)));
      // Near-delimiters inside the file: the boundary without its dashes, without its line ending, cut short.
      // And the whole delimiter followed by what Go's reader does not take as one (a letter, one dash).
      const teasers = [`--${boundary}`, `\r\n--${boundary.slice(0, -1)}`, `\n-${boundary}`, `\r\n-${boundary}`, '\r\n\r\n', `\r\n--${boundary}X`, `\r\n--${boundary}-Y`];
      const file = Buffer.concat([random.subarray(0, 1000), ...teasers.map((t) => Buffer.from(t)), random.subarray(1000)]);
      const part = (headers: string, data: Buffer) => Buffer.concat([Buffer.from(`--${boundary}${eol}${headers.split('\n').join(eol)}${eol}${eol}`), data, Buffer.from(eol)]);
      const body = Buffer.concat([
        Buffer.from(next() < 0.5 ? '' : `a preamble${eol}`),
        part('Content-Disposition: form-data; name="comment"', Buffer.from('an ordinary field')),
        part('Content-Disposition: form-data; name="file"; filename="disk.img"\nContent-Type: application/octet-stream', file),
        part('Content-Disposition: form-data; name="after"', Buffer.from('later')),
        Buffer.from(`--${boundary}--${eol}`),
      ]);
      seeds.push({ boundary, body, file, eol });
    }
  }
  return seeds;
}

/** One mutated copy of a seed's body, chosen by `next`; mutations cluster where the parser decides things. */
export function mutate(seed: Seed, next: () => number): Buffer {
  let out = Buffer.from(seed.body);
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]!;
  const mutations = 1 + Math.floor(next() * 3);
  for (let i = 0; i < mutations; i++) {
    // Somewhere near a delimiter, a header end or a name, mostly.
    const marks = [`--${seed.boundary}`, `${seed.eol}${seed.eol}`, 'name="file"', 'name="', '--\r\n', '\r\n', '\n'];
    const mark = Buffer.from(pick(marks));
    const hits: number[] = [];
    for (let at = out.indexOf(mark); at >= 0 && hits.length < 64; at = out.indexOf(mark, at + 1)) hits.push(at);
    const near = hits.length > 0 && next() < 0.85 ? pick(hits) + Math.floor(next() * (mark.length + 4)) - 2 : Math.floor(next() * out.length);
    const at = Math.max(0, Math.min(out.length - 1, near));
    const kind = next();
    if (kind < 0.3) out[at] = pick([0x0d, 0x0a, 0x2d, 0x20, 0x22, 0x3b, 0x00, Math.floor(next() * 256)]);
    else if (kind < 0.5) out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + Math.floor(next() * 4))]);
    else if (kind < 0.7) out = Buffer.concat([out.subarray(0, at), Buffer.from(pick(['\r', '\n', '\r\n', '-', '--', ' ', '\t', `--${seed.boundary}`, `\r\n--${seed.boundary}\r\n`])), out.subarray(at)]);
    else if (kind < 0.8) {
      // A span repeated: a second file part, a doubled header block.
      const length = 1 + Math.floor(next() * 200);
      out = Buffer.concat([out.subarray(0, at + length), out.subarray(at, at + length), out.subarray(at + length)]);
    } else if (kind < 0.9) out = out.subarray(0, at); // cut short
    else out = Buffer.concat([out, Buffer.alloc(1 + Math.floor(next() * 20000), pick([0x00, 0x2d, 0x0a]))]); // a long tail
  }
  return out;
}

export interface FuzzOutcome {
  ok: number;
  rejected: number;
}

async function readPart(body: Buffer, boundary: string, pieceSizes: number[], signal: AbortSignal): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const chunk of Readable.from(pieces(body, pieceSizes)).pipe(new MultipartFilePart(boundary))) {
    signal.throwIfAborted();
    // Pooled chunks are reused once handed on: keep a copy.
    out.push(Buffer.from(chunk as Buffer));
  }
  return Buffer.concat(out);
}

/** Parses `count` mutations (and each seed as it is); throws on the first outcome that is not allowed. */
export async function fuzz(seeds: Seed[], seed: number, count: number): Promise<FuzzOutcome> {
  const next = seeded(seed);
  const outcome: FuzzOutcome = { ok: 0, rejected: 0 };
  for (let i = -seeds.length; i < count; i++) {
    const form = seeds[(i + seeds.length) % seeds.length]!;
    const body = i < 0 ? form.body : mutate(form, next);
    // Tiny pieces make every delimiter straddle a seam; large ones take the whole-chunk path.
    const pieceSizes = Array.from({ length: 4 }, () => (next() < 0.3 ? 1 + Math.floor(next() * 8) : 1 + Math.floor(next() * 9000)));
    const fail = (what: string) => Object.assign(new Error(`multipart fuzz case ${i} (seed ${seed}, pieces ${pieceSizes.join('/')}): ${what}`), { input: body });
    const result = await settleWithin(CASE_TIMEOUT_MS, (signal) => readPart(body, form.boundary, pieceSizes, signal), () => fail(`still reading after ${CASE_TIMEOUT_MS / 1000} s`));
    if ('err' in result) {
      const unclear = unclearRefusal(result.err);
      if (unclear) throw fail(unclear);
      if (i < 0) throw fail(`an unmutated form was refused: ${(result.err as Error).message}`);
      outcome.rejected++;
      continue;
    }
    const out = result.value;
    if (i < 0 && !out.equals(form.file)) throw fail('an unmutated form did not give its file exactly');
    // The reader sees the body with a line ending in front (the first delimiter may lack it).
    const seen = Buffer.concat([Buffer.from('\r\n'), body]);
    const start = out.length > 0 ? seen.indexOf(out) : 0;
    if (start < 0) throw fail(`the ${out.length} bytes given are not one run of the body`);
    // A delimiter in either style of form (a bare-LF form's `\n--boundary` is inside this one too):
    // the boundary may be in the data only where Go's reader (CDI's) would not end the part there,
    // followed by something other than `--`, a space, a tab, a line end or the end of the body.
    const delimiter = `\r\n--${form.boundary}`;
    for (let at = out.indexOf(delimiter); at >= 0; at = out.indexOf(delimiter, at + 1)) {
      const after = seen.subarray(start + at + delimiter.length, start + at + delimiter.length + 2);
      if (after.length === 0 || [0x20, 0x09, 0x0d, 0x0a].includes(after[0]!) || after.toString('latin1') === '--') {
        throw fail(`the bytes given run across a delimiter (${JSON.stringify(delimiter)} followed by ${JSON.stringify(after.toString('latin1'))})`);
      }
    }
    outcome.ok++;
  }
  return outcome;
}
