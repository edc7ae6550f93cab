/** qcow2 test images made at test time by qemu-img and qemu-io (the real tools, never our code). */
import { closeSync, openSync, statSync, writeSync } from 'node:fs';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { run } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';

export interface ImageCase {
  name: string;
  /** Builds the image in `dir` and returns its path. */
  build(dir: string): string;
  /** Laid out in order (every table before what it maps): the one-pass driver must not spill. */
  inOrder: boolean;
}

export const qemuImg = (...args: string[]) => run('qemu-img', args);
/** Runs qemu-io commands on an image, one -c per command. */
export const qemuIo = (file: string, ...commands: string[]) =>
  run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file]);

/** A tiny seeded generator so "random" layouts are the same on every run. */
export function seeded(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

function created(dir: string, name: string, size: string, options: string, ...writes: string[]): string {
  const file = `${dir}/${name}.qcow2`;
  qemuImg('create', '-q', '-f', 'qcow2', ...(options ? ['-o', options] : []), file, size);
  if (writes.length > 0) qemuIo(file, ...writes);
  return file;
}

function converted(dir: string, name: string, sizeBytes: number, ...convertArgs: string[]): string {
  const raw = `${dir}/${name}.src.raw`;
  makeDiskLikeImage(raw, sizeBytes);
  const file = `${dir}/${name}.qcow2`;
  qemuImg('convert', '-O', 'qcow2', ...convertArgs, raw, file);
  return file;
}

const basicWrites = ['write -P 0x11 0 1M', 'write -P 0x22 3M 64k', 'write -P 0x33 5000000 512', 'write -P 0x44 7340544 8192'];

export const IMAGE_CASES: ImageCase[] = [
  { name: 'compat 0.10', inOrder: true, build: (d) => created(d, 'v2', '8M', 'compat=0.10', ...basicWrites) },
  { name: 'compat 1.1', inOrder: true, build: (d) => created(d, 'v3', '8M', 'compat=1.1', ...basicWrites) },
  ...[512, 4096, 65536, 2097152].map((cluster) => ({
    name: `cluster size ${cluster}`,
    inOrder: true,
    build: (d: string) => created(d, `c${cluster}`, '6M', `cluster_size=${cluster}`, 'write -P 0x51 0 100k', 'write -P 0x52 2000000 300k', 'write -P 0x53 6290432 1024'),
  })),
  { name: 'convert -c zlib', inOrder: true, build: (d) => converted(d, 'zlib', 6 << 20, '-c') },
  { name: 'convert -c zstd', inOrder: true, build: (d) => converted(d, 'zstd', 6 << 20, '-c', '-o', 'compression_type=zstd') },
  {
    name: 'convert -c zlib, 4 KiB clusters, v2',
    inOrder: true,
    build: (d) => converted(d, 'zlib4k', 3 << 20, '-c', '-o', 'cluster_size=4096,compat=0.10'),
  },
  { name: 'convert plain', inOrder: true, build: (d) => converted(d, 'plain', 6 << 20) },
  { name: 'convert -W', inOrder: true, build: (d) => converted(d, 'outoforder', 6 << 20, '-W', '-m', '8') },
  {
    name: 'extended_l2 with partial subcluster writes',
    inOrder: true,
    build: (d) =>
      created(
        d,
        'extl2',
        '4M',
        'extended_l2=on,cluster_size=64k',
        'write -P 0x61 4096 1000',
        'write -P 0x62 70000 3000',
        'write -P 0x63 131072 65536',
        'write -z 135168 4096',
        'write -P 0x64 1048576 2048',
        'write -z 1050624 2048',
        'write -P 0x65 4190000 4304',
      ),
  },
  {
    name: 'write -z zero clusters',
    inOrder: true,
    build: (d) => created(d, 'zeroes', '4M', '', 'write -P 0x71 0 1M', 'write -z 64k 128k', 'write -z 2M 512k', 'write -z -u 512k 64k'),
  },
  {
    // The zero-flagged clusters keep their stale bytes in the file, far ahead of the last L2 table:
    // the one-pass driver must know they are dead and not spill them.
    name: 'write -z over allocated data, several L2 tables',
    inOrder: true,
    build: (d) => created(d, 'stale', '8M', 'cluster_size=4096', 'write -P 0x72 0 7M', 'write -z 0 1M', 'write -z 3M 4k'),
  },
  {
    name: 'many random-offset writes',
    inOrder: true,
    build: (d) => {
      const next = seeded(42);
      const writes: string[] = [];
      for (let i = 0; i < 150; i++) {
        const offset = Math.floor(next() * (16 << 20) / 512) * 512;
        const length = Math.min((1 + Math.floor(next() * 32)) * 512, (16 << 20) - offset);
        writes.push(`write -P ${1 + Math.floor(next() * 254)} ${offset} ${length}`);
      }
      return created(d, 'random', '16M', '', ...writes);
    },
  },
  {
    name: 'internal snapshot then writes',
    inOrder: false,
    build: (d) => {
      const file = created(d, 'snap', '4M', '', 'write -P 0x81 0 2M');
      qemuImg('snapshot', '-c', 'first', file);
      qemuIo(file, 'write -P 0x82 64k 128k', 'write -P 0x83 3M 64k', 'write -z 1M 64k');
      return file;
    },
  },
  {
    name: 'resized after writes',
    inOrder: false,
    build: (d) => {
      const file = created(d, 'resized', '4M', 'cluster_size=4096', 'write -P 0x91 0 256k', 'write -P 0x92 3M 8k');
      qemuImg('resize', '-q', file, '40M');
      qemuIo(file, 'write -P 0x93 39M 12k');
      return file;
    },
  },
  // qemu packs compressed clusters byte by byte: a tiny one lands in the last sector of the one
  // before, mapped by an L2 table written after 6 MiB of data. One qemu-io session, or they would
  // not share the host cluster.
  ...['zlib', 'zstd'].map((type) => ({
    name: `${type} compressed clusters sharing a sector, the second mapped 6 MiB later`,
    inOrder: false,
    build: (d: string) =>
      created(d, `shared-sector-${type}`, '32M', `cluster_size=4096,compression_type=${type}`, 'write -c -P 1 0 4k', 'write -P 2 8M 6M', 'write -c -P 3 16M 4k'),
  })),
  ...['metadata', 'falloc', 'full'].map((mode) => ({
    name: `preallocation=${mode}`,
    inOrder: true,
    build: (d: string) => created(d, `prealloc-${mode}`, '3M', `preallocation=${mode}`, 'write -P 0xa1 100k 50k'),
  })),
  {
    name: 'virtual size not a multiple of the cluster size',
    inOrder: true,
    build: (d) => created(d, 'odd', '5000704', '', 'write -P 0xb1 4900000 100704', 'write -P 0xb2 0 1000'),
  },
  {
    // qemu-img create rounds sizes up to 512; other writers need not. qemu reads whole sectors only.
    name: 'virtual size not a multiple of 512 (header size patched to 1000001)',
    inOrder: true,
    build: (d) => {
      const file = created(d, 'odd512', '1000448', '', 'write -P 0xc1 0 1000448');
      const size = Buffer.alloc(8);
      size.writeBigUInt64BE(1000001n);
      const fd = openSync(file, 'r+');
      writeSync(fd, size, 0, 8, 24);
      closeSync(fd);
      return file;
    },
  },
];

export const fileSize = (file: string) => statSync(file).size;

/** The image's bytes as the xz CLI compresses them, decompressed by `xz -dc` as a plain stream. */
export function xzCompress(file: string): string {
  run('xz', ['-T1', '-0', '-k', '-f', file]);
  return `${file}.xz`;
}

export function xzDecompressStream(xzFile: string): Readable {
  const child = spawn('xz', ['-dc', xzFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  return child.stdout;
}

/**
 * A 1 MiB LUKS-encrypted qcow2 (or, with `format` 'luks', a bare LUKS volume). qemu times PBKDF2 on the thread's CPU
 * clock while creating it; on a busy machine, or one whose clock ticks coarsely ("Unable to get accurate CPU usage"),
 * that can fail, so retry.
 */
export function createLuks(file: string, format: 'qcow2' | 'luks' = 'qcow2'): void {
  const options = format === 'qcow2'
    ? 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50'
    : 'key-secret=sec0,iter-time=50';
  for (let attempt = 1; ; attempt++) {
    try {
      qemuImg('create', '-q', '-f', format, '--object', 'secret,id=sec0,data=password', '-o', options, file, '1M');
      return;
    } catch (err) {
      if (attempt >= 20) throw err;
    }
  }
}
