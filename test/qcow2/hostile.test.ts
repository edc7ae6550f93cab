/**
 * Hostile and broken images (SPEC §3.1): each is rejected by both drivers with one clear line,
 * a typed bad-input ImportError, and header-level problems before any extent comes out.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, createReadStream, existsSync, mkdirSync, readdirSync, truncateSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { deflateRawSync } from 'node:zlib';
import { createRequire } from 'node:module';
import { makeTempDir, run, type TempDir } from '../support/tools.js';
import { ImportError } from '../../src/errors.js';
import { openQcow2RandomAccess, openQcow2Stream } from '../../src/qcow2/index.js';
import type { DiskImage } from '../../src/extents.js';
import { fileReader, writeExtents } from './helpers.js';
import { createLuks, qemuImg, qemuIo } from './images.js';
import { firstL2Entry, isCompressed, isPlainData, layout, readAt, u32, u64, writeAt } from './patch.js';

/** 'open-if-sized': random access rejects at open; one pass (size unknown) at the end of the stream. */
const zstdCompress = (data: Buffer): Buffer => (createRequire(import.meta.url)('zstd-napi') as typeof import('zstd-napi')).compress(data);

type Stage = 'open' | 'open-if-sized' | 'read';

function assertBadInput(err: unknown, pattern: RegExp): true {
  assert.ok(err instanceof ImportError, `expected an ImportError, got ${String(err)}`);
  assert.equal(err.category, 'bad-input');
  assert.match(err.message, pattern);
  assert.ok(!err.message.includes('\n'), 'one line');
  return true;
}

/** Both drivers must reject `file`: at open for header problems, at the latest while reading. */
async function expectRejected(file: string, pattern: RegExp, stage: Stage, tmp: TempDir): Promise<void> {
  const drain = async (open: () => Promise<DiskImage>, atOpen = stage === 'open') => {
    let opened = false;
    try {
      const disk = await open();
      opened = true;
      await writeExtents(disk, tmp.join('out.raw'));
    } catch (err) {
      if (atOpen) assert.equal(opened, false, `rejected at open, not later: ${String(err)}`);
      throw err;
    }
  };
  const reader = await fileReader(file);
  try {
    await assert.rejects(drain(() => openQcow2RandomAccess(reader), stage !== 'read'), (e) => assertBadInput(e, pattern), 'random access');
  } finally {
    await reader.close();
  }
  const scratchDir = tmp.path;
  await assert.rejects(
    drain(() => openQcow2Stream(createReadStream(file, { highWaterMark: 65536 }), { scratchDir })),
    (e) => assertBadInput(e, pattern),
    'one pass',
  );
}

describe('qcow2 hostile images are rejected', () => {
  let tmp: TempDir;
  let base: string;
  let compressed: string;
  let compressedZstd: string;
  let counter = 0;
  /** A fresh copy of `source` to patch. */
  const copy = (source: string) => {
    const file = tmp.join(`case-${counter++}.qcow2`);
    copyFileSync(source, file);
    return file;
  };

  before(() => {
    tmp = makeTempDir('qcow2-hostile-');
    base = tmp.join('base.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', base, '4M');
    qemuIo(base, 'write -P 0x11 0 256k', 'write -P 0x22 3M 64k');
    const raw = tmp.join('text.raw');
    run('bash', ['-c', `yes 'compressible text for a compressed cluster' | head -c 1048576 > ${raw}`]);
    compressed = tmp.join('compressed.qcow2');
    qemuImg('convert', '-c', '-O', 'qcow2', raw, compressed);
    compressedZstd = tmp.join('compressed-zstd.qcow2');
    qemuImg('convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', raw, compressedZstd);
  });
  after(() => tmp.remove());

  it('backing file', async () => {
    const file = tmp.join('backing.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', file, '1M');
    await expectRejected(file, /backing file \("\/etc\/passwd"\).*not supported/, 'open', tmp);
  });

  it('external data file', async () => {
    const file = tmp.join('datafile.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${tmp.join('datafile.data')}`, file, '1M');
    await expectRejected(file, /external data file.*datafile\.data/, 'open', tmp);
  });

  it('LUKS encryption', async () => {
    const file = tmp.join('luks.qcow2');
    createLuks(file);
    await expectRejected(file, /encrypted \(LUKS\)/, 'open', tmp);
  });

  it('AES encryption (crypt_method 1)', async () => {
    const file = copy(base);
    writeAt(file, 32, u32(1));
    await expectRejected(file, /encrypted \(AES\)/, 'open', tmp);
  });

  it('unknown incompatible feature bit', async () => {
    const file = copy(base);
    writeAt(file, 72, u64(1n << 10n));
    await expectRejected(file, /unknown incompatible features \(bit 10\)/, 'open', tmp);
  });

  it('corrupt bit', async () => {
    const file = copy(base);
    writeAt(file, 72, u64(1n << 1n));
    await expectRejected(file, /marked corrupt/, 'open', tmp);
  });

  for (const bits of [8, 22, 30]) {
    it(`cluster_bits ${bits}`, async () => {
      const file = copy(base);
      writeAt(file, 20, u32(bits));
      await expectRejected(file, new RegExp(`cluster_bits ${bits}`), 'open', tmp);
    });
  }

  it('L1 table larger than 32 MiB', async () => {
    const file = copy(base);
    writeAt(file, 36, u32((32 << 20) / 8 + 1));
    await expectRejected(file, /L1 table .* above the 32 MiB limit/, 'open', tmp);
  });

  it('L1 table too small for the virtual size', async () => {
    const file = copy(base);
    writeAt(file, 24, u64(1n << 40n)); // 1 TiB needs 2048 entries with 64 KiB clusters
    await expectRejected(file, /too small for its virtual size/, 'open', tmp);
  });

  it('L1 table past the end of the file', async () => {
    const file = copy(base);
    writeAt(file, 40, u64(BigInt(layout(file).fileSize + 65536 * 16)));
    await expectRejected(file, /L1 table .* past the end/, 'open-if-sized', tmp);
  });

  it('L1 table not cluster aligned', async () => {
    const file = copy(base);
    writeAt(file, 40, u64(BigInt(layout(file).l1Offset + 512)));
    await expectRejected(file, /L1 table at offset .* not aligned/, 'open', tmp);
  });

  it('refcount table past the end of the file', async () => {
    const file = copy(base);
    writeAt(file, 48, u64(1n << 40n));
    // One pass cannot know the file size at open; it fails at the end of the stream.
    await expectRejected(file, /refcount table .* past the end/, 'open-if-sized', tmp);
  });

  it('L2 table offset past the end of the file', async () => {
    const file = copy(base);
    writeAt(file, layout(file).l1Offset, u64(0x8000000000000000n | (1n << 36n)));
    await expectRejected(file, /L2 table .* past the end/, 'read', tmp);
  });

  it('L2 table offset not aligned', async () => {
    const file = copy(base);
    const { l1Offset } = layout(file);
    const entry = readAt(file, l1Offset, 8).readBigUInt64BE(0);
    writeAt(file, l1Offset, u64(entry + 512n));
    await expectRejected(file, /L2 table at unaligned offset/, 'read', tmp);
  });

  it('data cluster past the end of the file', async () => {
    const file = copy(base);
    const { at, entry } = firstL2Entry(file, 0, isPlainData);
    writeAt(file, at, u64((entry & 0xff000000000001ffn) | (1n << 34n)));
    await expectRejected(file, /past the end/, 'read', tmp);
  });

  it('data cluster offset not aligned', async () => {
    const file = copy(base);
    const { at, entry } = firstL2Entry(file, 0, isPlainData);
    writeAt(file, at, u64(entry + 512n));
    await expectRejected(file, /not aligned/, 'read', tmp);
  });

  it('compressed cluster that inflates past the cluster size', async () => {
    const file = copy(compressed);
    const { entry } = firstL2Entry(file, 0, isCompressed);
    const shift = 62n - (16n - 8n);
    const hostOffset = Number(entry & ((1n << shift) - 1n));
    const room = Number((entry >> shift) & 0xffn) * 512 + 512 - (hostOffset % 512);
    const bomb = deflateRawSync(Buffer.alloc(2 * 65536, 0x41), { windowBits: 12, level: 9 });
    assert.ok(bomb.length <= room, `bomb ${bomb.length} fits ${room}`);
    writeAt(file, hostOffset, bomb);
    await expectRejected(file, /inflates past the 65536-byte cluster/, 'read', tmp);
  });

  for (const [name, payload, pattern] of [
    ['a zstd cluster that inflates past the cluster size', () => zstdCompress(Buffer.alloc(2 * 65536, 0x41)), /inflates past the 65536-byte cluster/],
    ['a zstd cluster that is not zstd data', () => Buffer.alloc(64, 0x5a), /not valid zstd data/],
  ] as const) {
    it(name, async () => {
      const file = copy(compressedZstd);
      const { entry } = firstL2Entry(file, 0, isCompressed);
      const hostOffset = Number(entry & ((1n << 54n) - 1n));
      writeAt(file, hostOffset, payload());
      await expectRejected(file, pattern, 'read', tmp);
    });
  }

  it('truncated file', async () => {
    const file = copy(base);
    truncateSync(file, layout(file).fileSize - 100 * 1024);
    await expectRejected(file, /truncated|past the end/, 'read', tmp);
  });

  it('truncated in the middle of contiguous data: the line names the first cluster past the end, not where the read began', async () => {
    // Contiguous clusters are read as one piece of up to 1 MiB (cluster-map.ts); found by a QA pass.
    const file = tmp.join('truncated-contiguous.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', file, '64M');
    qemuIo(file, 'write -P 0x11 0 40M');
    truncateSync(file, 40 * 1024 * 1024);
    const reader = await fileReader(file);
    const image = await openQcow2RandomAccess(reader);
    await assert.rejects(writeExtents(image, tmp.join('truncated-contiguous.raw')), /is at host offset 0x2800000 \(\+65536 bytes\), past the end of the 41943040-byte file/);
  });

  it('truncated inside the header', async () => {
    const file = copy(base);
    truncateSync(file, 50);
    await expectRejected(file, /truncated/, 'open', tmp);
  });

  it('header_length larger than a cluster', async () => {
    const file = copy(base);
    writeAt(file, 100, u32(65536 + 8));
    await expectRejected(file, /header_length 65544, larger than its 65536-byte cluster/, 'open', tmp);
  });

  it('refcount_order above 6 (qemu: "Reference count entry width too large")', async () => {
    for (const order of [7, 64]) {
      const file = copy(base);
      writeAt(file, 96, u32(order));
      assert.throws(() => run('qemu-img', ['info', file]), /Reference count entry width too large/);
      await expectRejected(file, new RegExp(`refcount_order ${order}: refcounts wider than 64 bits do not exist`), 'open', tmp);
    }
  });

  it('through the CLI: exit 1, one line, nothing left behind (header and read-time rejections)', async () => {
    const backing = tmp.join('cli-backing.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', backing, '1M');
    const truncated = copy(base);
    truncateSync(truncated, layout(truncated).fileSize - 100 * 1024);
    for (const [file, pattern] of [[backing, /backing file/], [truncated, /truncated|past the end/]] as const) {
      const outDir = tmp.join(`cli-out-${counter++}`);
      mkdirSync(outDir);
      const out = `${outDir}/disk.raw`;
      const result = await runCli(['convert', file, out, '-q']);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, pattern);
      assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
      assert.equal(existsSync(out), false, 'no output file');
      assert.deepEqual(readdirSync(outDir), [], 'no temporary file either');
    }
  });

  it('not a qcow2 image at all', async () => {
    const file = tmp.join('zeros.img');
    run('truncate', ['-s', '1M', file]);
    await expectRejected(file, /not a qcow2 image/, 'open', tmp);
  });
});
