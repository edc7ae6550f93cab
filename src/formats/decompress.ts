import zlib from 'node:zlib';
import type { Duplex } from 'node:stream';
import type { CompressionFormat } from './magic.js';
import { ZstdDecoder } from './zstd-decoder.js';
import { XzDecoder } from './xz/xz-decoder.js';

/** 1 MiB output chunks: 4–8× faster than zlib's 16 KiB default, and the size targets write best. */
const CHUNK_SIZE = 1 << 20;

/**
 * A streaming decompressor for one compression layer. The decoders were chosen by benchmark
 * (README, dependency table): node zlib for gzip, node-liblzma against the system liblzma for xz,
 * zstd-napi's native context for zstd (zstd-decoder.ts).
 */
export function createDecompressor(format: CompressionFormat): Duplex {
  switch (format) {
    case 'gzip':
      // Concatenated gzip members (pigz, appended files) are decoded as one stream, as gzip -dc does.
      return zlib.createGunzip({ chunkSize: CHUNK_SIZE });
    case 'xz':
      return new XzDecoder();
    case 'zstd':
      return new ZstdDecoder();
  }
}
