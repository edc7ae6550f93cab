/**
 * Bench/test driver for the qcow2 module alone: converts a qcow2 (random access from a file, or
 * one pass from stdin with --stream) to a raw file with positional writes, skipping all-zero
 * 4 KiB blocks like qemu-img's default -S 4k. Prints a JSON line of facts on stdout.
 * Usage: node --import tsx bench/qcow2-convert.ts [--stream] [--scratch DIR] <in.qcow2|-> <out.raw>
 */
import { open } from 'node:fs/promises';
import { openQcow2RandomAccess, openQcow2Stream } from '../src/qcow2/index.js';
import { fileReader } from '../test/qcow2/helpers.js';

const BLOCK = 4096;
const ZERO = Buffer.alloc(BLOCK);
let streamMode = false;
/** Positional writes kept in flight (1 = one after another, as a simple target does). */
let writesInFlight = 1;
let scratchDir: string | undefined;
const positional: string[] = [];
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i]!;
  if (arg === '--stream') streamMode = true;
  else if (arg === '--scratch') scratchDir = process.argv[++i];
  else if (arg === '--writes') writesInFlight = Number(process.argv[++i]);
  else positional.push(arg);
}
const [input, output] = positional;
if (!input || !output) throw new Error('usage: qcow2-convert.ts [--stream] [--scratch DIR] <in> <out>');

const started = process.hrtime.bigint();
const reader = streamMode ? undefined : await fileReader(input);
const image = streamMode
  ? await openQcow2Stream(input === '-' ? process.stdin : (await open(input)).createReadStream({ highWaterMark: 1 << 20 }), { scratchDir })
  : await openQcow2RandomAccess(reader!);
const out = await open(output, 'w');
const inFlight: Promise<unknown>[] = [];
let written = 0;
for await (const extent of image.extents()) {
  if (!extent.data) continue;
  const data = extent.data;
  // Write runs of non-zero 4 KiB blocks; zero blocks stay holes.
  let runStart = -1;
  for (let at = 0; at < data.length; at += BLOCK) {
    const zero = isZero(data, at, Math.min(at + BLOCK, data.length));
    if (!zero && runStart < 0) runStart = at;
    if (zero && runStart >= 0) {
      written += await writeRun(extent.offset, data, runStart, at);
      runStart = -1;
    }
  }
  if (runStart >= 0) written += await writeRun(extent.offset, data, runStart, data.length);
}
await Promise.all(inFlight);
await out.truncate(image.virtualSize!);
await out.close();
await reader?.close();
const usage = process.resourceUsage();
console.log(JSON.stringify({
  seconds: Number(process.hrtime.bigint() - started) / 1e9,
  written,
  scratchBytes: image.scratchBytesUsed?.() ?? 0,
  maxRssMiB: Math.round(usage.maxRSS / 1024),
}));

async function writeRun(base: number, data: Buffer, from: number, to: number): Promise<number> {
  const pending = out.write(data, from, to - from, base + from);
  pending.catch(() => {});
  inFlight.push(pending);
  while (inFlight.length >= writesInFlight) await inFlight.shift();
  return to - from;
}

function isZero(buf: Buffer, start: number, end: number): boolean {
  return ZERO.compare(buf, start, end, 0, end - start) === 0;
}
