import { createRequire } from 'node:module';
import path from 'node:path';
import { nativeModule } from '../../util/native-module.js';

const require = createRequire(import.meta.url);

/** liblzma's return codes (lzma/base.h) that this decoder tells apart. */
export const LZMA_OK = 0;
export const LZMA_STREAM_END = 1;
const LZMA_RUN = 0;
const LZMA_FINISH = 3;

const REASONS: Record<number, string> = {
  2: 'the stream has no integrity check',
  3: 'the integrity check type is not supported',
  5: 'out of memory',
  6: 'the memory limit was reached',
  7: 'not in the xz format',
  8: 'it uses options this liblzma does not support',
  9: 'the compressed data is corrupt',
  10: 'the data ends in the middle of the stream',
  11: 'liblzma reported an internal error',
};

/** A liblzma failure in words; `code` is liblzma's return value. */
export function lzmaReason(code: number): string {
  return REASONS[code] ?? `liblzma error ${code}`;
}

interface NativeLzma {
  code(
    action: number,
    input: Buffer | null,
    inputOffset: number,
    inputLength: number,
    output: Buffer,
    outputOffset: number,
    done: (ret: number, availIn: number, availOut: number) => void,
  ): void;
  close(): void;
}
interface NativeModule {
  LZMA: new (mode: number, options: object) => NativeLzma;
  STREAM_DECODE: number;
}

let native: NativeModule | undefined;

/** node-liblzma's addon itself (built against the system liblzma): its Transform wrapper allocates a
 * zeroed buffer per chunk and ignores backpressure, so the decoder drives the engine directly. */
function loadNative(): NativeModule {
  if (!native) {
    // Our own module first, when it is there: it sets the allocator to keep freed memory, so that
    // each block's dictionary reuses the last one's pages (native/file-copy/file-copy.c).
    nativeModule();
    // The package exports only its wrapper (lib/lzma.js); the addon lives at the package root's build/.
    const root = path.resolve(path.dirname(require.resolve('node-liblzma')), '..');
    try {
      // Where npm ci builds it, which node-gyp-build would pick too (3 ms sooner than asking it).
      native = require(path.join(root, 'build', 'Release', 'node_lzma.node')) as NativeModule;
    } catch {
      native = (require('node-gyp-build') as (dir: string) => NativeModule)(root);
    }
  }
  return native;
}

export interface StepResult {
  ret: number;
  /** Input bytes consumed by this step. */
  consumed: number;
  /** Output bytes produced by this step. */
  produced: number;
}

/**
 * One liblzma .xz stream decoder (concatenated streams allowed). Each step runs one lzma_code()
 * call on libuv's thread pool, so several engines decode in parallel.
 */
export class LzmaDecoderEngine {
  private readonly engine: NativeLzma;
  private busy = false;
  private closed = false;

  constructor() {
    const lzma = loadNative();
    this.engine = new lzma.LZMA(lzma.STREAM_DECODE, { check: 0, preset: 6, filters: [0x21] });
  }

  /** Decodes from input[inputOffset, +inputLength) into output[outputOffset..]; `finish` once no more input will come. */
  step(input: Buffer, inputOffset: number, inputLength: number, output: Buffer, outputOffset: number, finish: boolean): Promise<StepResult> {
    if (this.busy || this.closed) throw new Error('LzmaDecoderEngine: step() while busy or closed');
    this.busy = true;
    const room = output.length - outputOffset;
    return new Promise((resolve) => {
      this.engine.code(finish ? LZMA_FINISH : LZMA_RUN, input, inputOffset, inputLength, output, outputOffset, (ret, availIn, availOut) => {
        // Settled from the callback, continued by the awaiting code on a later tick: the addon
        // releases its bookkeeping only after this callback returns.
        this.busy = false;
        resolve({ ret, consumed: inputLength - availIn, produced: room - availOut });
      });
    });
  }

  /** Frees liblzma's memory; safe to call twice, deferred until a running step ends. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.engine.close();
  }
}
