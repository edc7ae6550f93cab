/**
 * The .xz decoder: multi-block files (xz -T) decoded block-parallel, single-block files by one
 * liblzma decoder, concatenated streams and padding, every check type, filter chains; truncation
 * and corruption anywhere give an error, never a short output; memory stays bounded for bombs.
 * The oracle is the xz CLI (`xz -dc`) and the original bytes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { Readable } from 'node:stream';
import { XzDecoder } from '../../src/formats/xz/xz-decoder.js';
import { blockSizes, parseBlockHeader } from '../../src/formats/xz/xz-container.js';
import { ZstdDecoder } from '../../src/formats/zstd-decoder.js';
import { runCli } from '../support/cli.js';
import { buildLauncher } from '../support/launcher.js';
import { makeTempDir, qemuRawSha256, sha256File, sh, type TempDir } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';

const MiB = 1 << 20;
let dir: TempDir;
let original: Buffer;

/** Feeds `input` to a fresh decoder in pieces of the given sizes (cycled) and collects the output. */
async function decode(input: Buffer, pieceSizes: number[] = [MiB]): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let at = 0, i = 0; at < input.length; i++) {
    const size = pieceSizes[i % pieceSizes.length]!;
    pieces.push(input.subarray(at, at + size));
    at += size;
  }
  const decoder = new XzDecoder();
  Readable.from(pieces).pipe(decoder);
  const out: Buffer[] = [];
  for await (const chunk of decoder) out.push(chunk as Buffer);
  return Buffer.concat(out);
}

/** The xz CLI's own opinion of a file: its output, or null when it rejects the file. */
function xzCli(file: string): Buffer | null {
  try {
    sh(`xz -dc ${file} > ${file}.cli`);
    return readFileSync(`${file}.cli`);
  } catch {
    return null;
  }
}

function xzFile(name: string, options: string, data: Buffer = original): string {
  const raw = dir.join(`${name}.raw`);
  writeFileSync(raw, data);
  sh(`xz ${options} -c ${raw} > ${dir.join(`${name}.xz`)}`);
  return dir.join(`${name}.xz`);
}

function blockCount(file: string): number {
  return Number(/^ {2}Blocks:\s+(\d+)/m.exec(sh(`xz -lv ${file}`))![1]);
}

before(() => {
  dir = makeTempDir();
  makeDiskLikeImage(dir.join('disk.raw'), 3 * MiB);
  original = readFileSync(dir.join('disk.raw'));
});
after(() => dir.remove());

describe('xz decoder: valid files', () => {
  for (const check of ['none', 'crc32', 'crc64', 'sha256']) {
    test(`multi-block (xz -T2 --block-size=200KiB), check ${check}, split at odd places`, async () => {
      const file = xzFile(`multi-${check}`, `-T2 --block-size=200KiB -3 --check=${check}`);
      assert.ok(blockCount(file) >= 10, 'the file really has many blocks');
      const input = readFileSync(file);
      assert.ok((await decode(input)).equals(original));
      assert.ok((await decode(input, [1, 7, 4093, 65536, 12])).equals(original));
    });
  }

  test('single block (xz -T1): no sizes in the block header, one decoder', async () => {
    const file = xzFile('single', '-T1 -6');
    assert.equal(blockCount(file), 1);
    assert.ok((await decode(readFileSync(file), [3, 100000])).equals(original));
  });

  test('a filter chain (x86 BCJ + LZMA2) and a 64 MiB dictionary (-9)', async () => {
    const bcj = xzFile('bcj', '-T2 --block-size=256KiB --x86 --lzma2=preset=1');
    assert.ok((await decode(readFileSync(bcj))).equals(original));
    const nine = xzFile('nine', '-T2 --block-size=512KiB -9');
    assert.ok((await decode(readFileSync(nine))).equals(original));
  });

  test('concatenated streams (multi-block, single-block, multi-block) with stream padding', async () => {
    const a = readFileSync(xzFile('cat-a', '-T2 --block-size=128KiB -1'));
    const b = readFileSync(xzFile('cat-b', '-T1 -1', original.subarray(0, MiB)));
    const c = readFileSync(xzFile('cat-c', '-T2 --block-size=64KiB -1', original.subarray(MiB, 2 * MiB)));
    const joined = Buffer.concat([a, Buffer.alloc(8), a, Buffer.alloc(4), c, b, c, Buffer.alloc(12)]);
    writeFileSync(dir.join('cat.xz'), joined);
    const expected = xzCli(dir.join('cat.xz'));
    assert.ok(expected, 'xz accepts the concatenation');
    assert.ok((await decode(joined, [5, 65536, 333])).equals(expected));
  });

  test('20 000 tiny blocks (xz -T2 --block-size=4): runs of small blocks share a decoder; larger blocks keep one each', async () => {
    const text = Buffer.from(original.subarray(0, 80_000).toString('base64').slice(0, 80_000));
    const file = xzFile('tiny', '-T2 -0 --block-size=4', text);
    assert.equal(blockCount(file), 20_000);
    const decoder = new XzDecoder();
    Readable.from([readFileSync(file)]).pipe(decoder);
    const out: Buffer[] = [];
    for await (const chunk of decoder) out.push(chunk as Buffer);
    assert.ok(Buffer.concat(out).equals(text));
    // Each decoder costs ~0.3 ms to set up: 20 000 of them took 7 s, as many as the data took to make.
    assert.ok(decoder.decodersStarted <= 20, `${decoder.decodersStarted} decoders for 20 000 blocks`);

    const large = xzFile('large-blocks', '-T2 -0 --block-size=300KiB');
    const parallel = new XzDecoder();
    Readable.from([readFileSync(large)]).pipe(parallel);
    for await (const chunk of parallel) void chunk;
    assert.equal(parallel.decodersStarted, blockCount(large));
  });

  test('an empty stream decodes to nothing, as xz does', async () => {
    sh(`xz -T2 -c < /dev/null > ${dir.join('empty.xz')}`);
    assert.equal((await decode(readFileSync(dir.join('empty.xz')))).length, 0);
  });
});

/** A damaged file's error says what is wrong; a decoder bug (a TypeError, a RangeError) does not pass. */
function damagedFileError(err: unknown): boolean {
  return err instanceof Error && !(err instanceof TypeError || err instanceof RangeError) && /corrupt|ends in the middle|does not match/.test(err.message);
}

describe('xz decoder: damaged files are rejected, never cut short', () => {
  const cases: [string, string][] = [
    ['multi-block', '-T2 --block-size=200KiB -3'],
    ['single-block', '-T1 -3'],
    ['small-blocks', '-T2 -0 --block-size=1000'],
  ];
  for (const [name, options] of cases) {
    test(`${name}: truncated at 25 points, from the stream header to the footer`, async () => {
      const whole = readFileSync(xzFile(`trunc-${name}`, options));
      const points = [1, 6, 11, 12, 13, 20, whole.length - 1, whole.length - 4, whole.length - 12, whole.length - 13, whole.length - 30];
      for (let i = 1; i <= 14; i++) points.push(Math.floor((whole.length * i) / 15));
      for (const at of points) {
        await assert.rejects(decode(whole.subarray(0, at)), damagedFileError, `truncated at ${at} of ${whole.length}`);
      }
    });

    test(`${name}: a flipped byte in the header, data, index or footer`, async () => {
      const file = xzFile(`flip-${name}`, options);
      const whole = readFileSync(file);
      for (const at of [7, 14, Math.floor(whole.length / 3), Math.floor(whole.length / 2), whole.length - 20, whole.length - 8, whole.length - 1]) {
        const damaged = Buffer.from(whole);
        damaged[at]! ^= 0x10;
        writeFileSync(`${file}.bad`, damaged);
        if (xzCli(`${file}.bad`) !== null) continue; // a flip xz itself cannot notice is not a test
        await assert.rejects(decode(damaged), damagedFileError, `flip at ${at} of ${whole.length}`);
      }
    });
  }

  test('stream padding that is not a multiple of four, and trailing garbage', async () => {
    const whole = readFileSync(xzFile('pad', '-T2 --block-size=200KiB -1'));
    await assert.rejects(decode(Buffer.concat([whole, Buffer.alloc(3)])), /padding/);
    // Megabytes of valid padding are skipped a chunk at a time, not byte by byte.
    const padded = await decode(Buffer.concat([whole, Buffer.alloc(8 << 20), whole]), [65536]);
    assert.ok(padded.equals(Buffer.concat([original, original])));
    await assert.rejects(decode(Buffer.concat([whole, Buffer.alloc(4), Buffer.from('junk')])), /magic/);
  });
});

describe('xz decoder: blocks large enough to get a decoder each (over 256 KiB)', () => {
  test('every check type with 1 MiB blocks decodes to the original', async () => {
    for (const check of ['none', 'crc32', 'crc64', 'sha256']) {
      const file = xzFile(`alone-${check}`, `-T2 --block-size=1MiB -3 --check=${check}`);
      assert.equal(blockCount(file), 3);
      assert.ok((await decode(readFileSync(file), [65536, 7, 333333])).equals(original), `check ${check}`);
    }
  });

  test('a changed byte that LZMA2 decodes without complaint (stored, incompressible data): caught by the block check, no output left (CLI)', async () => {
    // Random bytes are stored in uncompressed LZMA2 chunks: control byte, two size bytes, then the
    // bytes as they are. A flip there changes the output and only the integrity check can tell.
    const random = Buffer.alloc(3 * MiB);
    for (let i = 0; i < random.length; i += 4) random.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ (i >>> 7)) >>> 0, i);
    const file = xzFile('alone-stored', '-T2 --block-size=1MiB -3', random);
    const whole = readFileSync(file);
    // The second block: after the stream header (12 bytes) and the first block (header, data, padding, CRC-64).
    const first = parseBlockHeader(whole.subarray(12, 12 + (whole[12]! + 1) * 4));
    const secondBlock = 12 + blockSizes(first, 8).total;
    const dataStart = secondBlock + (whole[secondBlock]! + 1) * 4;
    assert.ok(whole[dataStart] === 0x01 || whole[dataStart] === 0x02, 'the block starts with an uncompressed LZMA2 chunk');
    whole[dataStart + 3 + 1000]! ^= 0x40;
    writeFileSync(`${file}.bad`, whole);
    assert.equal(xzCli(`${file}.bad`), null, 'xz -dc rejects it too');
    await assert.rejects(decode(whole), damagedFileError);
    const out = dir.join('alone-stored.img');
    const result = await runCli(['convert', `${file}.bad`, out, '-f', 'raw']);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /xz data is corrupt or truncated/);
    assert.equal(existsSync(out), false, 'no output file is left');
  });
});

test('a block header that asks for a 512 MiB dictionary: refused before anything is allocated, naming what it needs (CLI)', async () => {
  for (const options of ['-T1 -3', '-T2 --block-size=200KiB -3']) {
    const file = xzFile(`dict-${options.length}`, options);
    const bytes = readFileSync(file);
    // The first block header follows the 12-byte stream header: size byte, flags, then the LZMA2
    // filter (id 0x21, one property byte); its CRC32 is the header's last four bytes.
    const headerSize = (bytes[12]! + 1) * 4;
    const header = bytes.subarray(12, 12 + headerSize);
    const props = header.indexOf(Buffer.from([0x21, 0x01])) + 2;
    assert.ok(props > 2, 'found the LZMA2 filter');
    header[props] = 34; // (2 | 0) << (17 + 11) = 512 MiB
    header.writeUInt32LE(crc32(header.subarray(0, headerSize - 4)), headerSize - 4);
    writeFileSync(file, bytes);
    const result = await runCli(['import', file, dir.join('dict.img')]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /: the xz data needs a 512 MiB dictionary to decode, more than the 256 MiB cdi-importer allows \(xz -9 uses 64 MiB\): recompress it/);
  }
});

test('one stream mixing blocks with and without recorded sizes (valid: xz -t accepts it): one line saying so, not "corrupt" (CLI)', async () => {
  const file = xzFile('mixed', '-T2 --block-size=200KiB -3');
  // The second block's offset in the file, from xz's own listing.
  const second = sh(`xz --robot --list -vv ${file}`)
    .split('\n')
    .filter((line) => line.startsWith('block\t'))
    .map((line) => Number(line.split('\t')[4]))[1]!;
  const bytes = readFileSync(file);
  const headerSize = (bytes[second]! + 1) * 4;
  const header = bytes.subarray(second, second + headerSize);
  // Flags 0x40 and 0x80: a compressed and an uncompressed size follow as varints. Drop them, move
  // the filter flags up, pad with zeros to the same header size, and sign it again.
  let at = 2;
  for (const flag of [0x40, 0x80]) {
    if (header[1]! & flag) while (header[at++]! & 0x80);
  }
  assert.ok(at > 2, 'the block recorded its sizes');
  const filters = Buffer.from(header.subarray(at, headerSize - 4));
  header[1] = header[1]! & ~0xc0;
  header.fill(0, 2, headerSize - 4);
  filters.copy(header, 2);
  header.writeUInt32LE(crc32(header.subarray(0, headerSize - 4)), headerSize - 4);
  writeFileSync(file, bytes);
  sh(`xz -t ${file}`); // still valid xz
  const result = await runCli(['import', file, dir.join('mixed.img')]);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /: this xz stream mixes blocks with and without recorded sizes, which no xz tool writes and cdi-importer does not decode; decompress it with `xz -d` before importing/);
  assert.doesNotMatch(result.stderr, /corrupt/);
});

describe('bombs: a few hundred KiB that stand for a GiB of zeros', () => {
  for (const kind of ['xz', 'zstd'] as const) {
    test(`${kind}: the decoder stops when nobody reads, then delivers every byte`, async () => {
      const bomb = dir.join(`bomb.${kind}`);
      sh(kind === 'xz' ? `head -c 1G /dev/zero | xz -T2 -1 > ${bomb}` : `head -c 1G /dev/zero | zstd -q -1 > ${bomb}`);
      const decoder = kind === 'xz' ? new XzDecoder() : new ZstdDecoder();
      const before = process.memoryUsage().arrayBuffers;
      decoder.end(readFileSync(bomb));
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const held = process.memoryUsage().arrayBuffers - before;
      assert.ok(held < 160 * MiB, `${Math.round(held / MiB)} MiB held while the reader was away`);
      let total = 0;
      for await (const chunk of decoder) total += (chunk as Buffer).length;
      assert.equal(total, 1 << 30);
    });
  }

  test('xz: a reader that stops after the first chunk (info, a refused import) stops the decoding too', async () => {
    // 1 GiB of zeros in ~340 blocks, all in one input chunk: the blocks not started when the reader
    // stops must not start afterwards, each with its own decoder and buffers (this took 1.4 GB).
    const bomb = dir.join('stopped.xz');
    sh(`head -c 1G /dev/zero | xz -T2 -1 > ${bomb}`);
    const decoder = new XzDecoder();
    const before = process.memoryUsage().arrayBuffers;
    decoder.end(readFileSync(bomb));
    for await (const chunk of decoder) {
      assert.ok((chunk as Buffer).length > 0);
      break; // destroys the decoder, as a reader that has what it needs does
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const held = process.memoryUsage().arrayBuffers - before;
    assert.ok(held < 160 * MiB, `${Math.round(held / MiB)} MiB held after the reader stopped`);
  });

  test('CLI: an `xz -T2 -6` file whose blocks decode faster than the disk takes them stays under 200 MiB of peak RSS', async () => {
    // xz's default preset writes 24 MiB blocks; zeros decode at GB/s, so every block in flight
    // fills its buffer (with a 128 MiB budget for them the process peaked at 193-214 MB).
    const zeros = dir.join('zeros-6.raw');
    sh(`truncate -s 512M ${zeros} && xz -T2 -6 -k ${zeros}`);
    assert.ok(blockCount(`${zeros}.xz`) > 8);
    const out = dir.join('zeros-6.img');
    // The launcher users run (tsx, which runCli goes through, adds ~40 MB of its own).
    mkdirSync(dir.join('launcher'));
    const launcher = await buildLauncher(dir.join('launcher'));
    const result = spawnSync('/usr/bin/time', ['-f', 'peak-rss-kib %M', process.execPath, launcher, 'convert', `${zeros}.xz`, out, '-q'], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    const peakMiB = Number(/peak-rss-kib (\d+)/.exec(result.stderr)![1]) / 1024;
    assert.ok(peakMiB < 200, `peak RSS ${Math.round(peakMiB)} MiB`);
    assert.equal(await sha256File(out), await qemuRawSha256(zeros, dir.path));
  });
});

test('CLI: a multi-block qcow2.xz and raw.xz import byte-exact (qemu-img is the oracle)', async () => {
  const raw = dir.join('cli.raw');
  makeDiskLikeImage(raw, 12 * MiB);
  sh(`qemu-img convert -O qcow2 ${raw} ${dir.join('cli.qcow2')}`);
  sh(`xz -T2 --block-size=1MiB -2 -k ${dir.join('cli.qcow2')} ${raw}`);
  assert.ok(blockCount(dir.join('cli.qcow2.xz')) > 2);
  for (const [input, oracle] of [
    ['cli.qcow2.xz', 'cli.qcow2'],
    ['cli.raw.xz', 'cli.raw'],
  ] as const) {
    const out = dir.join(`${input}.img`);
    const result = await runCli(['convert', dir.join(input), out, '-q']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(out), await qemuRawSha256(dir.join(oracle), dir.path));
  }
});
