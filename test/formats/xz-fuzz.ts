/**
 * Mutation fuzzing of our .xz container code (src/formats/xz: stream header, block headers,
 * index, footer, the block-parallel split): fields of files made by the xz CLI are changed and
 * their CRC32s fixed again, as a crafted file would have them, so the mutations reach the parser
 * rather than stop at a checksum. The only acceptable outcomes are an error that says what is
 * wrong (no TypeError or RangeError, one line), or output that `xz -dc` gives for the same bytes;
 * and never a hang or unbounded output. Shared by the CI test (fixed seed, modest count) and
 * bench/fuzz.ts (long runs).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { XzDecoder } from '../../src/formats/xz/xz-decoder.js';
import { encodeVli, readVli } from '../../src/formats/xz/xz-container.js';
import { seeded } from '../qcow2/images.js';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { sh } from '../support/tools.js';
import { pieces, settleWithin, unclearRefusal } from '../support/fuzz-case.js';

const CASE_TIMEOUT_MS = 20_000;
/** The seeds hold 256 KiB each; a mutated file may not make the decoder hand out more than this. */
const MAX_OUTPUT = 64 << 20;

/** Multi-block files with sizes in their block headers (xz -T2), one without (xz -T1), other checks and a BCJ filter. */
export function buildSeedFiles(dir: string): Buffer[] {
  const raw = path.join(dir, 'seed.raw');
  makeDiskLikeImage(raw, 256 << 10);
  const variants = [
    '-T2 --block-size=32KiB -1',
    '-T2 --block-size=48KiB -1 --check=sha256',
    '-T2 --block-size=64KiB --check=none -1',
    '-T2 --block-size=40KiB --check=crc32 --x86 --lzma2=preset=1',
    '-T1 -1',
  ];
  return variants.map((options, i) => {
    const out = path.join(dir, `seed-${i}.xz`);
    sh(`xz ${options} -c '${raw}' > '${out}'`);
    return readFileSync(out);
  });
}

interface Region {
  start: number;
  /** Where the CRC32 over [start, crcAt) sits. */
  crcAt: number;
}

/** The CRC-protected regions of a well-formed single-stream file: stream header, block headers, index, footer. */
function regions(xz: Buffer): Region[] {
  const out: Region[] = [{ start: 6, crcAt: 8 }];
  const footer = xz.length - 12;
  out.push({ start: footer + 4, crcAt: footer + 10 }); // backward size and flags; the CRC is stored before them
  const indexSize = (xz.readUInt32LE(footer + 4) + 1) * 4;
  const index = footer - indexSize;
  out.push({ start: index, crcAt: footer - 4 });
  let { value: records, next } = readVli(xz, index + 1, xz.length);
  let block = 12;
  while (records-- > 0) {
    const unpadded = readVli(xz, next, xz.length);
    next = readVli(xz, unpadded.next, xz.length).next;
    const headerSize = (xz[block]! + 1) * 4;
    out.push({ start: block, crcAt: block + headerSize - 4 });
    block += Math.ceil(unpadded.value / 4) * 4;
  }
  return out;
}

function fixCrc(xz: Buffer, region: Region, footerCrc: boolean): void {
  const crc = crc32(xz.subarray(region.start, region.crcAt));
  // The footer keeps its CRC32 in front of the bytes it covers; everything else keeps it after them.
  xz.writeUInt32LE(crc, footerCrc ? region.start - 4 : region.crcAt);
}

const INTERESTING = [0, 1, 2, 3, 4, 0x7f, 0x80, 0xff, 1 << 20, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53 - 1];

/** One mutated copy of `seed`, chosen by `next`. */
export function mutate(seed: Buffer, next: () => number): Buffer {
  let out = Buffer.from(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]!;
  const all = regions(out);
  const mutations = 1 + Math.floor(next() * 2);
  for (let i = 0; i < mutations; i++) {
    const kind = next();
    if (kind < 0.7) {
      // A field in a protected region, its CRC32 fixed (mostly) as a crafted file would have it.
      const region = pick(all);
      const footer = region.crcAt === out.length - 2;
      const at = region.start + Math.floor(next() * (region.crcAt - region.start));
      if (next() < 0.5) out[at] = next() < 0.5 ? Math.floor(next() * 256) : out[at]! ^ (1 << Math.floor(next() * 8));
      else {
        const bytes = encodeVli(pick(INTERESTING) + (next() < 0.3 ? Math.floor(next() * 4096) : 0));
        for (let b = 0; b < bytes.length && at + b < region.crcAt; b++) out[at + b] = bytes[b]!;
      }
      if (next() < 0.85) fixCrc(out, region, footer);
    } else if (kind < 0.8) {
      // Compressed data: liblzma and the block check must catch it.
      const at = 12 + Math.floor(next() * (out.length - 24));
      out[at] = out[at]! ^ (1 << Math.floor(next() * 8));
    } else if (kind < 0.9) {
      // One block's header or body copied over another's: sizes that disagree with the index.
      const blocks = all.filter((r) => r.start >= 12 && r.crcAt < out.length - 12 - 4 && out[r.start] !== 0);
      if (blocks.length < 2) continue;
      const from = pick(blocks);
      const to = pick(blocks);
      const length = Math.min(from.crcAt + 4 - from.start, out.length - 12 - to.start);
      out.copy(out, to.start, from.start, from.start + length);
    } else {
      // Truncated, or followed by padding, garbage or a second copy of itself.
      const choice = next();
      if (choice < 0.5) out = out.subarray(0, Math.floor(next() * out.length));
      else if (choice < 0.75) out = Buffer.concat([out, Buffer.alloc(4 * Math.floor(next() * 3) + (next() < 0.3 ? 1 : 0))]);
      else out = Buffer.concat([out, next() < 0.5 ? seed : Buffer.from('garbage after the stream')]);
      break; // the regions no longer match the bytes
    }
  }
  return out;
}

export interface FuzzOutcome {
  ok: number;
  rejected: number;
}

/** What the xz CLI makes of the bytes: its output, or null when it refuses them. */
function xzCli(data: Buffer, workDir: string): Buffer | null {
  const file = path.join(workDir, 'case.xz');
  writeFileSync(file, data);
  const result = spawnSync('xz', ['-dc', file], { maxBuffer: MAX_OUTPUT * 2 });
  return result.status === 0 ? result.stdout : null;
}

async function decodeBounded(data: Buffer, piece: number, signal: AbortSignal): Promise<Buffer> {
  const decoder = new XzDecoder();
  Readable.from(pieces(data, [piece])).pipe(decoder);
  const out: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of decoder) {
      signal.throwIfAborted();
      total += (chunk as Buffer).length;
      if (total > MAX_OUTPUT) throw new RangeError(`more than ${MAX_OUTPUT} bytes out of a mutated 256 KiB file`);
      out.push(chunk as Buffer);
    }
  } finally {
    decoder.destroy();
  }
  return Buffer.concat(out);
}

/** Decodes `count` mutations; throws on the first outcome that is not allowed. */
export async function fuzz(seeds: Buffer[], seed: number, count: number, workDir: string): Promise<FuzzOutcome> {
  const next = seeded(seed);
  const outcome: FuzzOutcome = { ok: 0, rejected: 0 };
  for (let i = 0; i < count; i++) {
    const data = mutate(seeds[i % seeds.length]!, next);
    const piece = 1 + Math.floor(next() * 70_000);
    const fail = (what: string) => Object.assign(new Error(`xz fuzz case ${i} (seed ${seed}): ${what}`), { input: data });
    const result = await settleWithin(CASE_TIMEOUT_MS, (signal) => decodeBounded(data, piece, signal), () => fail(`still decoding after ${CASE_TIMEOUT_MS / 1000} s`));
    if ('err' in result) {
      const unclear = unclearRefusal(result.err);
      if (unclear) throw fail(unclear);
      outcome.rejected++;
    } else {
      const expected = xzCli(data, workDir);
      if (expected === null) throw fail(`decoded ${result.value.length} bytes of a file xz -dc refuses`);
      if (!expected.equals(result.value)) throw fail(`decoded ${result.value.length} bytes where xz -dc gives ${expected.length} other ones`);
      outcome.ok++;
    }
  }
  return outcome;
}
