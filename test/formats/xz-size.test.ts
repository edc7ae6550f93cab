/**
 * The size an .xz file declares in its stream indexes, read from its end (xz-size.ts): equal to
 * what `xz --robot --list` reports for files the xz CLI wrote, undefined for anything that does
 * not add up. Then what it is for: a raw.xz too large for the volume fails before anything is
 * written, and `info` gives its size without decompressing it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { open, readFile } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { xzDeclaredSize } from '../../src/formats/xz/xz-size.js';
import type { RandomAccessReader } from '../../src/sources/source.js';
import { runCli } from '../support/cli.js';
import { makeTempDir, run, sh, type TempDir } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';

const MiB = 1 << 20;
let dir: TempDir;

before(() => {
  dir = makeTempDir();
  makeDiskLikeImage(dir.join('a.raw'), 5 * MiB + 1000);
  makeDiskLikeImage(dir.join('b.raw'), 3 * MiB);
  sh(`cd ${dir.path} && xz -kf -T1 a.raw && xz -T2 --block-size=1MiB -c a.raw > a.mt.xz && xz -c b.raw > b.raw.xz`);
  sh(`cd ${dir.path} && cat a.raw.xz b.raw.xz > two.xz && (cat a.raw.xz; head -c 12 /dev/zero; cat b.raw.xz; head -c 4 /dev/zero) > padded.xz`);
  sh(`cd ${dir.path} && xz -C none -c b.raw > none.xz && xz -C sha256 -c b.raw > sha.xz && : | xz -c > empty.xz`);
});
after(() => dir.remove());

async function fileReader(file: string): Promise<RandomAccessReader> {
  const handle = await open(file, 'r');
  const { size } = await handle.stat();
  return {
    size,
    read: async (offset, length) => {
      const buffer = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      await handle.read(buffer, 0, buffer.length, offset);
      return buffer;
    },
    close: () => handle.close(),
  };
}

async function declared(file: string): Promise<number | undefined> {
  const reader = await fileReader(file);
  try {
    return await xzDeclaredSize(reader);
  } finally {
    await reader.close();
  }
}

/** The uncompressed total `xz --robot --list` gives (the oracle). */
function xzList(file: string): number {
  const totals = run('xz', ['--robot', '--list', file]).split('\n').find((line) => line.startsWith('totals'))!;
  return Number(totals.split('\t')[4]);
}

describe('xzDeclaredSize', () => {
  for (const name of ['a.raw.xz', 'a.mt.xz', 'b.raw.xz', 'two.xz', 'padded.xz', 'none.xz', 'sha.xz', 'empty.xz']) {
    test(`${name}: as xz --list says`, async () => {
      assert.equal(await declared(dir.join(name)), xzList(dir.join(name)));
    });
  }

  test('a truncated file, a garbled footer or index, and trailing garbage declare nothing', async () => {
    const whole = await readFile(dir.join('a.raw.xz'));
    const variants: Record<string, Buffer> = {
      truncated: whole.subarray(0, whole.length - 100),
      footerCrc: Buffer.from(whole).fill(0x55, whole.length - 12, whole.length - 8),
      index: (() => {
        const bad = Buffer.from(whole);
        bad[whole.length - 20] = bad[whole.length - 20]! ^ 0xff; // inside the index, before its CRC
        return bad;
      })(),
      garbage: Buffer.concat([whole, Buffer.from('appended text\n')]),
      notXz: Buffer.alloc(4096, 7),
    };
    for (const [name, bytes] of Object.entries(variants)) {
      const file = dir.join(`bad-${name}.xz`);
      writeFileSync(file, bytes);
      assert.equal(await declared(file), undefined, name);
    }
  });
});

describe('what the declared size is for', () => {
  test('info gives a raw.xz image\'s size without --scan', async () => {
    const result = await runCli(['info', dir.join('two.xz'), '--json']);
    assert.equal(result.code, 0, result.stderr);
    const size = xzList(dir.join('two.xz'));
    assert.equal((JSON.parse(result.stdout) as { 'virtual-size': number })['virtual-size'], Math.ceil(size / 512) * 512);
  });

  test('an index that understates the size (CRCs recomputed, as only a crafted file would) is corruption, not a volume too small', async () => {
    // b.raw.xz is one block of 3 MiB; its index record says so. Rewrite the record to 1 MiB.
    const bytes = Buffer.from(await readFile(dir.join('b.raw.xz')));
    const backward = (bytes.readUInt32LE(bytes.length - 8) + 1) * 4;
    const index = bytes.subarray(bytes.length - 12 - backward, bytes.length - 12);
    const vli = (n: number) => {
      const out: number[] = [];
      for (let rest = n; ; rest = Math.floor(rest / 128)) {
        if (rest < 128) return [...out, rest];
        out.push((rest % 128) | 0x80);
      }
    };
    const at = index.indexOf(Buffer.from(vli(3 * MiB)));
    assert.ok(at > 0, 'the record holds the uncompressed size');
    Buffer.from(vli(MiB)).copy(index, at); // same length: the index keeps its size
    index.writeUInt32LE(crc32(index.subarray(0, index.length - 4)), index.length - 4);
    writeFileSync(dir.join('lying.xz'), bytes);
    assert.equal(await declared(dir.join('lying.xz')), MiB, 'the crafted index is believed');
    const result = await runCli(['import', dir.join('lying.xz'), '-o', dir.join('lying.img'), '--size', '1Mi', '--filesystem-overhead', '0']);
    assert.equal(result.code, 1, result.stderr);
    // Whichever notices first, the decoder (index against blocks) or the writer (data past the size): corrupt.
    assert.match(result.stderr, /goes on past the virtual size of 1048576 bytes it declares .*: the image is corrupt|xz data is corrupt/);
    assert.doesNotMatch(result.stderr, /available storage/);
    assert.equal(existsSync(dir.join('lying.img')), false);
  });

  test('a raw.xz larger than --size fails before writing, with its size, not part way through', async () => {
    const out = dir.join('small.img');
    const result = await runCli(['import', dir.join('a.mt.xz'), '-o', out, '--size', '4Mi', '--filesystem-overhead', '0']);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`virtual image size ${Math.ceil((5 * MiB + 1000) / 512) * 512} is larger than the reported available storage ${4 * MiB}`));
    assert.doesNotMatch(result.stderr, /measured as the stream is read/);
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(dir.path).filter((n) => n.includes('.partial-')), []);
  });
});
