import zlib from 'node:zlib';
import type { Transform } from 'node:stream';
import { createRequire } from 'node:module';
import type { CompressionFormat } from './magic.js';
import { ZstdDecoder } from './zstd-decoder.js';

const require = createRequire(import.meta.url);
// A CommonJS native addon: loaded only when an xz stream needs it.
type LzmaModule = typeof import('node-liblzma');

/** 1 MiB output chunks: 4–8× faster than zlib's 16 KiB default, and the size targets write best. */
const CHUNK_SIZE = 1 << 20;

/**
 * A streaming decompressor for one compression layer. The decoders were chosen by benchmark
 * (README, dependency table): node zlib for gzip, node-liblzma against the system liblzma for xz,
 * zstd-napi's native context for zstd (zstd-decoder.ts).
 */
export function createDecompressor(format: CompressionFormat): Transform {
  switch (format) {
    case 'gzip':
      // Concatenated gzip members (pigz, appended files) are decoded as one stream, as gzip -dc does.
      return zlib.createGunzip({ chunkSize: CHUNK_SIZE });
    case 'xz': {
      const lzma = require('node-liblzma') as LzmaModule;
      return lzma.createUnxz({ chunkSize: CHUNK_SIZE }) as unknown as Transform;
    }
    case 'zstd':
      return new ZstdDecoder();
  }
}
