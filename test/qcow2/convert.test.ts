/**
 * Byte-exactness of both drivers against the oracle (`qemu-img convert -O raw`) on images made
 * by qemu-img/qemu-io: random access from the file, one pass from its .xz (decompressed by xz).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, mkdirSync, readdirSync, statSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { makeTempDir, qemuRawSha256, run, sh, sha256File, type TempDir } from '../support/tools.js';
import { openQcow2RandomAccess, openQcow2Stream } from '../../src/qcow2/index.js';
import { fileReader, writeExtents } from './helpers.js';
import { readAt } from './patch.js';
import { IMAGE_CASES, xzCompress, xzDecompressStream } from './images.js';

/**
 * Guest bytes qemu-img map reports as allocated ("data": true): all we may emit with data.
 * (qemu also reports preallocated clusters over host-file holes as zero; we read those as data.)
 */
function qemuDataBytes(image: string): number {
  const map = JSON.parse(run('qemu-img', ['map', '--output=json', image])) as { length: number; data: boolean; zero: boolean }[];
  return map.filter((r) => r.data).reduce((sum, r) => sum + r.length, 0);
}

describe('qcow2 conversion matches qemu-img convert -O raw', () => {
  let tmp: TempDir;
  before(() => {
    tmp = makeTempDir('qcow2-convert-');
  });
  after(() => tmp.remove());

  for (const testCase of IMAGE_CASES) {
    it(testCase.name, async () => {
      const dir = tmp.join(testCase.name.replace(/[^a-z0-9]+/gi, '-'));
      const scratch = `${dir}/scratch`;
      mkdirSync(scratch, { recursive: true });
      const image = testCase.build(dir);
      const expected = await qemuRawSha256(image, dir);
      const dataLimit = qemuDataBytes(image);

      const reader = await fileReader(image);
      try {
        const disk = await openQcow2RandomAccess(reader);
        const out = `${dir}/random-access.raw`;
        const written = await writeExtents(disk, out);
        assert.equal(written.covered, disk.virtualSize, 'random-access extents cover the virtual size');
        assert.equal(await sha256File(out), expected, 'random access');
        assert.ok(written.dataBytes <= dataLimit, `random access emitted ${written.dataBytes} data bytes, qemu-img map has ${dataLimit}`);
      } finally {
        await reader.close();
      }

      const xz = xzCompress(image);
      const disk = await openQcow2Stream(xzDecompressStream(xz), { scratchDir: scratch });
      const out = `${dir}/one-pass.raw`;
      const written = await writeExtents(disk, out);
      assert.equal(written.covered, disk.virtualSize, 'one-pass extents cover the virtual size');
      assert.equal(await sha256File(out), expected, 'one pass from .xz');
      assert.ok(written.dataBytes <= dataLimit, `one pass emitted ${written.dataBytes} data bytes, qemu-img map has ${dataLimit}`);
      if (testCase.inOrder) assert.equal(disk.scratchBytesUsed!(), 0, 'an in-order image needs no scratch');
      assert.deepEqual(readdirSync(scratch), [], 'the spill file is removed');
    });
  }

  it('one pass from a plain file stream gives the same bytes', async () => {
    const dir = tmp.join('plain-stream');
    mkdirSync(dir);
    const image = IMAGE_CASES.find((c) => c.name === 'convert -c zstd')!.build(dir);
    const disk = await openQcow2Stream(createReadStream(image, { highWaterMark: 7777 }));
    const out = `${dir}/one-pass.raw`;
    await writeExtents(disk, out);
    assert.equal(await sha256File(out), await qemuRawSha256(image, dir));
  });
});

describe('qcow2 in one pass: clusters that follow each other go out together', () => {
  it('the data clusters of one stream chunk come out as one extent, and the bytes match qemu-img', async () => {
    // An extent per 64 KiB cluster took its own trip through every stage after the driver (merging,
    // the write queue) on the main thread, a tenth of a qcow2.xz import's CPU time on two cores.
    const tmp = makeTempDir('qcow2-merged-extents-');
    try {
      const raw = tmp.join('data.raw');
      sh(`head -c 8M /dev/urandom > ${raw} && truncate -s 16M ${raw}`);
      const image = tmp.join('data.qcow2');
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
      const disk = await openQcow2Stream(createReadStream(image, { highWaterMark: 1 << 20 }));
      let dataExtents = 0;
      let dataBytes = 0;
      for await (const extent of disk.extents()) {
        if (!extent.data) continue;
        assert.equal(extent.data.length, extent.length);
        assert.ok(extent.data.equals(readAt(raw, extent.offset, extent.length)), `the bytes at ${extent.offset} differ from the source disk`);
        dataExtents++;
        dataBytes += extent.length;
        extent.release?.();
      }
      assert.equal(dataBytes, 8 << 20);
      // 8 MiB in 1 MiB chunks: 8 extents, or 9 where the chunks and clusters do not line up.
      assert.ok(dataExtents <= 10, `${dataExtents} data extents for 8 MiB of contiguous clusters`);
    } finally {
      tmp.remove();
    }
  });
});

describe('compressed qcow2 in one pass: clusters decode several at once', () => {
  it('a `convert -c` image from a stream: up to eight decodes overlap, and the bytes match qemu-img', async () => {
    // Base64 of random bytes compresses to ~3/4: about one compressed cluster ends in each 64 KiB
    // of the stream. Waiting for each one's decode as it arrived kept one or two running at a time
    // (a 256 MiB image through stdin: 0.93 s, by random access from the file 0.53 s).
    const tmp = makeTempDir('qcow2-parallel-decodes-');
    const dir = tmp.path;
    const raw = `${dir}/text.raw`;
    sh(`head -c 12M /dev/urandom | base64 -w 76 > ${raw}`);
    const image = `${dir}/c.qcow2`;
    run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, image]);
    const disk = await openQcow2Stream(createReadStream(image, { highWaterMark: 1 << 20 }));
    const out = `${dir}/one-pass.raw`;
    await writeExtents(disk, out);
    assert.equal(await sha256File(out), await qemuRawSha256(image, dir));
    assert.ok(disk.decodesAtOncePeak() >= 6, `at most ${disk.decodesAtOncePeak()} compressed clusters decoded at once`);
    tmp.remove();
  });
});

describe('compressed qcow2 by random access: each host byte is read about once', () => {
  // qemu-img convert -c stores incompressible clusters uncompressed, and its parallel writers
  // interleave them with compressed ones; a batch of compressed clusters read as one span that
  // also covered them read those bytes twice (1.6-1.9x the file, over HTTP Range too).
  for (const compression of ['zlib', 'zstd']) {
    it(`${compression}: the bytes read stay within the file's size, and the output matches qemu-img`, async () => {
      const tmp = makeTempDir('qcow2-compressed-reads-');
      try {
        const raw = tmp.join('disk.raw');
        makeDiskLikeImage(raw, 48 << 20);
        const image = tmp.join(`disk-${compression}.qcow2`);
        run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', `compression_type=${compression}`, raw, image]);
        const result = await runCli(['convert', image, tmp.join('out.raw'), '--json', '-q']);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(await sha256File(tmp.join('out.raw')), await qemuRawSha256(image, tmp.path));
        const { sourceBytes } = JSON.parse(result.stdout) as { sourceBytes: number };
        assert.ok(sourceBytes <= statSync(image).size, `${sourceBytes} bytes read from a ${statSync(image).size}-byte file`);
      } finally {
        tmp.remove();
      }
    });
  }
});
