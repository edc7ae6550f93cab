import { PassThrough, type Duplex, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Gunzip } from 'node:zlib';
import { DETECTION_BYTES, detectFormat, isCompression, type CompressionFormat, type DiskFormat, type PageFormat, type UnsupportedCompression } from './magic.js';
import { createDecompressor } from './decompress.js';
import { peekStream } from './peek.js';
import { badInput, oneLine } from '../errors.js';

const NAMES: Record<CompressionFormat, string> = { gzip: 'gzip', xz: 'xz', zstd: 'zstd' };

export interface UnwrappedStream {
  /** Detected layers, outermost first, ending with the inner format: ['xz', 'qcow2']. */
  chain: string[];
  format: DiskFormat | PageFormat | UnsupportedCompression;
  /** The inner stream, positioned at its first byte. */
  stream: Readable;
  /** The first bytes of the inner stream (up to DETECTION_BYTES). */
  head: Buffer;
}

/**
 * Peels compression layers one at a time (each kind at most once, SPEC §3) and detects the
 * format inside. Decoder failures become one-line bad-input errors naming the layer. `purpose`
 * ends the line about an empty source: what there is none of.
 */
export async function unwrapCompression(source: Readable, where: string, purpose = 'no disk image to import'): Promise<UnwrappedStream> {
  const chain: string[] = [];
  const seen = new Set<CompressionFormat>();
  let stream = source;
  for (;;) {
    const peeked = await peekStream(stream, DETECTION_BYTES);
    stream = peeked.stream;
    const format = detectFormat(peeked.head);
    if (peeked.head.length === 0) {
      const inside = chain.length ? ` after ${chain.join(' → ')} decompression` : '';
      throw badInput(`${where} is empty${inside}: there is ${purpose}`);
    }
    if (seen.has(format as CompressionFormat)) {
      // Nesting one kind twice is never a real image and is how decompression bombs multiply.
      throw badInput(`${where}: ${format} data inside ${format} data is not supported; decompress it once before importing`);
    }
    if (!isCompression(format)) {
      chain.push(format);
      return { chain, format, stream, head: peeked.head };
    }
    seen.add(format);
    chain.push(format);
    stream = decompressed(stream, format, where);
  }
}

function decompressed(input: Readable, format: CompressionFormat, where: string): Readable {
  const decoder = createDecompressor(format);
  // pipe() does not forward errors, so each side's failure is translated once, onto `output`:
  // decoder failures become a one-line bad-input error naming the layer; source failures pass as they are.
  const output = new PassThrough({ highWaterMark: 1 << 20 });
  input.on('error', (err) => output.destroy(err));
  decoder.on('error', (err) => {
    output.destroy(badInput(decoderFailureMessage(format, oneLine(err), where), err));
  });
  output.once('close', () => {
    decoder.destroy();
    if (!input.destroyed) input.destroy();
  });
  input.pipe(decoder);
  if (format === 'gzip') endAfterTrailingBytesChecked(input, decoder, output, where);
  else decoder.pipe(output);
  return output;
}

/**
 * zlib stops at a gzip member followed by a zero byte, as at padding, and drops what follows,
 * unread or not: a second member or other bytes after some zeros came out as a shorter disk without
 * a word (found by a QA pass; bytes right after a member fail as trailing garbage). So the output
 * ends only once the input has, and only when nothing but zeros came after the last member the
 * decoder took (its bytesWritten counts the input it consumed).
 */
function endAfterTrailingBytesChecked(input: Readable, decoder: Duplex, output: PassThrough, where: string): void {
  let inputBytes = 0;
  let lastNonZeroEnd = 0;
  input.on('data', (chunk: Buffer) => {
    // From the end back: compressed data's last byte is almost never zero, so this is one look a chunk.
    let end = chunk.length;
    while (end > 0 && chunk[end - 1] === 0) end--;
    if (end > 0) lastNonZeroEnd = inputBytes + end;
    inputBytes += chunk.length;
  });
  decoder.pipe(output, { end: false });
  decoder.once('end', () => {
    finished(input, { writable: false }).then(
      () => {
        if (lastNonZeroEnd > (decoder as Gunzip).bytesWritten) output.destroy(badInput(gzipTrailingGarbage(where)));
        else output.end();
      },
      () => {}, // the input's own error reaches `output` through its error listener
    );
  });
}

function gzipTrailingGarbage(where: string): string {
  return `${where}: bytes that are not gzip follow the gzip data (trailing garbage): the file was damaged or appended to; if the disk inside is whole, gzip -dc (which drops them) and import the result`;
}

/** One line for a decoder's failure on the data at `where` (also used for registry layers). */
export function decoderFailureMessage(format: CompressionFormat, reason: string, where: string): string {
  // zlib checks the magic of every gzip member after the first; ours was checked on detection, so
  // this is what follows the last member (what gzip -dc calls "trailing garbage" and skips with a
  // warning; CDI's Go reader refuses it, and so do we).
  // A member after zero padding that ends on a chunk boundary: zlib starts it after its own end.
  if (format === 'gzip' && (reason === 'incorrect header check' || /push\(\) after EOF/.test(reason))) return gzipTrailingGarbage(where);
  // The native decoder failed to load (a broken install, or no file descriptor left to open it):
  // nothing is known about the data yet.
  if (/Cannot find module|EMFILE|ENFILE/.test(reason)) {
    return `${where}: the ${NAMES[format]} decoder could not be loaded (${oneLine(reason)}): check the installation and the open-files limit (ulimit -n)`;
  }
  // Valid data that asks for more memory than the decoder grants is not corrupt: say what it needs.
  if (/cdi-importer allows/.test(reason)) return `${where}: the ${NAMES[format]} data ${oneLine(reason)}`;
  if (/too much memory|memory limit/i.test(reason)) {
    // zstd's own default limit (zstd -dc refuses the same frames without --memory).
    const smaller = format === 'zstd' ? 'a window of 128 MiB or less (zstd --long=27 or less, or without --long)' : 'xz -9 or a lower preset';
    return `${where}: the ${NAMES[format]} data needs more memory to decode than the decoder allows (${oneLine(reason)}): recompress it with ${smaller}`;
  }
  // A frame made with a dictionary (zstd -D) cannot be decoded without it; it is not damaged.
  if (format === 'zstd' && /dictionary mismatch/i.test(reason)) {
    return `${where}: the zstd data was compressed with a dictionary (zstd -D), which is not supported: decompress it with its dictionary (zstd -d -D DICT) and import the result`;
  }
  // Valid xz (xz -t accepts it) in a layout no xz tool writes: not corrupt, only not decoded here.
  if (/mixes blocks with and without recorded sizes/.test(reason)) return `${where}: ${oneLine(reason)}`;
  return `${where}: ${NAMES[format]} data is corrupt or truncated (${oneLine(reason)})`;
}
