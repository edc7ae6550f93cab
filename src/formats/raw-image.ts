import type { Readable } from 'node:stream';
import type { DiskImage, Extent } from '../extents.js';
import { streamChunks } from '../util/stream-chunks.js';
import { badInput } from '../errors.js';
import { chunkPool } from '../util/buffer-pool.js';
import type { OpenedSource } from '../sources/source.js';
import { xzDeclaredSize } from './xz/xz-size.js';
import { detectFormat } from './magic.js';

export const VHD_FOOTER_SIZE = 512;
const VHD_COOKIE = Buffer.from('conectix', 'latin1');

/** Whether a raw image's last 512 bytes are a fixed-size VHD's footer. */
export function isFixedVhd(tail: Buffer): boolean {
  return tail.length === VHD_FOOTER_SIZE && tail.subarray(0, VHD_COOKIE.length).equals(VHD_COOKIE);
}

export function fixedVhdRefusal(where: string): Error {
  return badInput(
    `${where} is a fixed-size VHD image (its footer is at the end), which is not supported: convert it to raw or qcow2 first (qemu-img convert -f vpc -O qcow2)`,
  );
}

/** The last `count` bytes of the stream, from its last two chunks. */
function lastBytes(count: number, previous: Buffer | undefined, last: Buffer | undefined): Buffer {
  if (!last) return Buffer.alloc(0);
  if (last.length >= count || !previous) return last.subarray(Math.max(0, last.length - count));
  return Buffer.concat([previous.subarray(Math.max(0, previous.length - (count - last.length))), last]);
}

/**
 * qemu sees a raw file as whole 512-byte sectors, so `qemu-img convert` pads a raw image's tail
 * with zeros up to the next sector; we match it to stay byte-identical.
 */
export function rawVirtualSize(bytes: number): number {
  return Math.ceil(bytes / 512) * 512;
}

/**
 * The uncompressed size a seekable source declares before any of it is decoded: a .xz file's
 * index, read from its end by random access (`head`: the source's first bytes).
 */
export async function declaredUncompressedSize(head: Buffer, source: Pick<OpenedSource, 'randomAccess'>): Promise<number | undefined> {
  if (!source.randomAccess || detectFormat(head) !== 'xz') return undefined;
  return xzDeclaredSize(source.randomAccess);
}

/**
 * The byte length of a raw image inside `chain` before its data is read: the source's size when
 * nothing was unwrapped, the declared size of a lone xz layer. Undefined otherwise (gzip records
 * it only modulo 4 GiB; a zstd file's frames would have to be walked).
 */
export function knownRawLength(chain: readonly string[], sourceSize: number | undefined, declared: number | undefined): number | undefined {
  if (chain.length === 1) return sourceSize;
  if (chain.length === 2 && chain[0] === 'xz') return declared;
  return undefined;
}

/**
 * A raw (or ISO) image from a sequential stream: every chunk is an extent at the running offset.
 * `virtualSize` is known only when the transport knew the uncompressed length. A fixed-size VHD
 * looks raw until its last sector (SPEC §3): the import fails there, and the target is removed.
 */
export function rawImage(stream: Readable, format: 'raw' | 'iso', where: string, byteLength?: number): DiskImage {
  return {
    format,
    virtualSize: byteLength === undefined ? undefined : rawVirtualSize(byteLength),
    async *extents(): AsyncGenerator<Extent> {
      let offset = 0;
      let previous: Buffer | undefined;
      let last: Buffer | undefined;
      for await (const data of streamChunks(stream)) {
        // Nothing else holds a raw chunk once it is written: its buffer may be recycled.
        yield { offset, length: data.length, data, release: () => chunkPool.give(data) };
        offset += data.length;
        previous = last;
        last = data;
      }
      if (isFixedVhd(lastBytes(VHD_FOOTER_SIZE, previous, last))) throw fixedVhdRefusal(where);
    },
  };
}
