/**
 * Mutation fuzzing of the qcow2 reader: bit flips and field mutations of valid qemu-made images.
 * The only acceptable outcomes are success with every extent inside [0, virtualSize), or an
 * ImportError. Shared by the CI test (fixed seed, modest count) and bench/fuzz.ts (long runs).
 */
import { Readable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { ImportError } from '../../src/errors.js';
import { openQcow2RandomAccess, openQcow2Stream } from '../../src/qcow2/index.js';
import type { DiskImage } from '../../src/extents.js';
import type { RandomAccessReader } from '../../src/sources/source.js';
import { qemuImg, qemuIo, seeded } from './images.js';
import { pieces } from '../support/fuzz-case.js';

export function memoryReader(data: Buffer): RandomAccessReader {
  return {
    size: data.length,
    read: async (offset, length) => data.subarray(offset, Math.min(data.length, offset + length)),
    close: async () => {},
  };
}

/** Small, varied seed images: v2, v3, compressed zlib and zstd, extended L2, 512-byte clusters. */
export function buildSeedImages(dir: string): Buffer[] {
  const make = (name: string, create: string[], writes: string[]) => {
    const file = `${dir}/${name}.qcow2`;
    qemuImg('create', '-q', '-f', 'qcow2', ...create, file, '2M');
    if (writes.length) qemuIo(file, ...writes);
    return file;
  };
  const files = [
    make('v3', [], ['write -P 0x11 0 128k', 'write -P 0x22 1M 64k', 'write -z 64k 64k']),
    make('v2', ['-o', 'compat=0.10,cluster_size=4096'], ['write -P 0x33 4096 20k', 'write -P 0x44 1500000 5000']),
    make('extl2', ['-o', 'extended_l2=on,cluster_size=32k'], ['write -P 0x55 1024 3000', 'write -z 40000 2048']),
    make('small', ['-o', 'cluster_size=512'], ['write -P 0x66 0 8k', 'write -P 0x67 1M 3k']),
  ];
  for (const type of ['zlib', 'zstd']) {
    const file = `${dir}/c-${type}.qcow2`;
    qemuImg('convert', '-c', '-O', 'qcow2', '-o', `compression_type=${type},cluster_size=8192`, files[0]!, file);
    files.push(file);
  }
  return files.map((f) => readFileSync(f));
}

/** Header fields worth breaking (offset, width). */
const FIELDS: [number, 4 | 8][] = [
  [4, 4], [8, 8], [16, 4], [20, 4], [24, 8], [32, 4], [36, 4], [40, 8], [48, 8], [56, 4], [60, 4], [64, 8],
  [72, 8], [80, 8], [88, 8], [96, 4], [100, 4],
];
const INTERESTING = [0n, 1n, 2n, 7n, 8n, 9n, 16n, 21n, 22n, 0x1ffn, 0x200n, 0x10000n, 0x7fffffffn, 0xffffffffn, 1n << 40n, (1n << 63n) - 1n, (1n << 64n) - 1n];

/** One mutated copy of `image`, chosen by `next`. */
export function mutate(image: Buffer, next: () => number): Buffer {
  const out = Buffer.from(image);
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]!;
  const mutations = 1 + Math.floor(next() * 4);
  const clusterBits = image.readUInt32BE(20);
  const l1 = Number(image.readBigUInt64BE(40));
  for (let i = 0; i < mutations; i++) {
    const kind = next();
    if (kind < 0.35) {
      // A bit flip, mostly in metadata: the header cluster, the L1 table, the first clusters.
      const span = next() < 0.7 ? Math.min(out.length, 6 << clusterBits) : out.length;
      const at = Math.floor(next() * span);
      out[at]! ^= 1 << Math.floor(next() * 8);
    } else if (kind < 0.65) {
      const [offset, width] = pick(FIELDS);
      const value = pick(INTERESTING) + (next() < 0.3 ? BigInt(Math.floor(next() * 1024)) : 0n);
      if (width === 4) out.writeUInt32BE(Number(value & 0xffffffffn), offset);
      else out.writeBigUInt64BE(value & ((1n << 64n) - 1n), offset);
    } else if (kind < 0.85 && l1 + 8 <= out.length) {
      // An L1 entry, or an entry of the table it points to, set to something plausible.
      const entryAt = l1 + 8 * Math.floor(next() * 4);
      if (entryAt + 8 > out.length) continue;
      const l2 = Number(out.readBigUInt64BE(entryAt) & 0x00fffffffffffe00n);
      const target = next() < 0.5 || l2 === 0 || l2 + 8 > out.length ? entryAt : l2 + 8 * Math.floor(next() * 64);
      if (target + 8 > out.length) continue;
      const flags = pick([0n, 1n << 63n, 1n << 62n, 1n, (1n << 63n) | 1n]);
      const offset = BigInt(Math.floor(next() * out.length * 1.5)) & ~(next() < 0.7 ? (1n << BigInt(clusterBits)) - 1n : 0x1ffn);
      out.writeBigUInt64BE(flags | offset, target);
    } else if (kind < 0.93) {
      // Copy one cluster over another: tables pointing into data, data posing as tables.
      const cs = 2 ** clusterBits;
      const clusters = Math.floor(out.length / cs);
      if (clusters < 2) continue;
      const from = Math.floor(next() * clusters) * cs;
      const to = (1 + Math.floor(next() * (clusters - 1))) * cs;
      out.copy(out, to, from, from + cs);
    } else {
      // Truncate or extend.
      const length = Math.floor(next() * out.length);
      return next() < 0.5 ? out.subarray(0, length) : Buffer.concat([out, Buffer.alloc(length % 4096, 0xff)]);
    }
  }
  return out;
}

export interface FuzzOutcome {
  ok: number;
  rejected: number;
}

/** Drains an image, checking every extent stays inside the virtual size. */
async function drain(disk: DiskImage): Promise<void> {
  const size = disk.virtualSize!;
  let budget = 64 << 20; // a 2 MiB seed cannot legitimately yield more data than this
  for await (const extent of disk.extents()) {
    if (!(extent.offset >= 0 && extent.length > 0 && extent.offset + extent.length <= size)) {
      throw new Error(`extent ${extent.offset}+${extent.length} outside [0, ${size})`);
    }
    if (extent.data) {
      if (extent.data.length !== extent.length) throw new Error('extent data length mismatch');
      budget -= extent.length;
      if (budget < 0) throw new Error('more data than a mutated 2 MiB image can hold');
    }
  }
}

/** Runs `count` mutations through both drivers; throws on the first outcome that is not allowed. */
export async function fuzz(seeds: Buffer[], seed: number, count: number, scratchDir: string): Promise<FuzzOutcome> {
  const next = seeded(seed);
  const outcome: FuzzOutcome = { ok: 0, rejected: 0 };
  for (let i = 0; i < count; i++) {
    const image = mutate(seeds[i % seeds.length]!, next);
    const chunk = 1 + Math.floor(next() * 100_000);
    for (const driver of ['random-access', 'one-pass'] as const) {
      try {
        const disk =
          driver === 'random-access'
            ? await openQcow2RandomAccess(memoryReader(image))
            : await openQcow2Stream(Readable.from(pieces(image, [chunk])), { scratchDir });
        await drain(disk);
        outcome.ok++;
      } catch (err) {
        if (err instanceof ImportError) {
          outcome.rejected++;
          continue;
        }
        const failure = new Error(`fuzz case ${i} (seed ${seed}, ${driver}): ${(err as Error)?.stack ?? String(err)}`);
        (failure as Error & { input?: Buffer }).input = image; // bench/fuzz.ts saves it
        throw failure;
      }
    }
  }
  return outcome;
}
