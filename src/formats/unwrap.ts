import { PassThrough, type Readable } from 'node:stream';
import { DETECTION_BYTES, detectFormat, isCompression, type CompressionFormat, type DiskFormat } from './magic.js';
import { createDecompressor } from './decompress.js';
import { peekStream } from './peek.js';
import { badInput, oneLine } from '../errors.js';

const NAMES: Record<CompressionFormat, string> = { gzip: 'gzip', xz: 'xz', zstd: 'zstd' };

export interface UnwrappedStream {
  /** Detected layers, outermost first, ending with the inner format: ['xz', 'qcow2']. */
  chain: string[];
  format: DiskFormat;
  /** The inner stream, positioned at its first byte. */
  stream: Readable;
  /** The first bytes of the inner stream (up to DETECTION_BYTES). */
  head: Buffer;
}

/**
 * Peels compression layers one at a time (each kind at most once, SPEC §3) and detects the
 * format inside. Decoder failures become one-line bad-input errors naming the layer.
 */
export async function unwrapCompression(source: Readable, where: string): Promise<UnwrappedStream> {
  const chain: string[] = [];
  const seen = new Set<CompressionFormat>();
  let stream = source;
  for (;;) {
    const peeked = await peekStream(stream, DETECTION_BYTES);
    stream = peeked.stream;
    const format = detectFormat(peeked.head);
    if (peeked.head.length === 0) {
      const inside = chain.length ? ` after ${chain.join(' → ')} decompression` : '';
      throw badInput(`${where} is empty${inside}: there is no disk image to import`);
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
    const reason = err instanceof Error ? err.message : String(err);
    output.destroy(badInput(`${where}: ${NAMES[format]} data is corrupt or truncated (${oneLine(reason)})`, err));
  });
  output.once('close', () => {
    decoder.destroy();
    if (!input.destroyed) input.destroy();
  });
  if (format === 'xz') {
    // node-liblzma ends quietly on truncated input; an xz file must end with its stream footer.
    // Registered before pipe() so the failure lands before `output` is ended.
    const footer = new XzFooterWatch();
    input.on('data', (chunk: Buffer) => footer.update(chunk));
    decoder.once('end', () => {
      if (!footer.complete()) output.destroy(badInput(`${where}: xz data is corrupt or truncated (the stream ends without its footer)`));
    });
  }
  input.pipe(decoder).pipe(output);
  return output;
}

/**
 * Remembers the last two bytes before any trailing zeros: a complete xz file ends with the footer
 * magic "YZ", optionally followed by zero stream padding.
 */
class XzFooterWatch {
  private pair: [number, number] = [-1, -1];
  private previousByte = -1;

  update(chunk: Buffer): void {
    if (chunk.length === 0) return;
    let i = chunk.length - 1;
    while (i >= 0 && chunk[i] === 0) i--;
    if (i >= 0) this.pair = [i > 0 ? chunk[i - 1]! : this.previousByte, chunk[i]!];
    this.previousByte = chunk[chunk.length - 1]!;
  }

  complete(): boolean {
    return this.pair[0] === 0x59 && this.pair[1] === 0x5a;
  }
}
