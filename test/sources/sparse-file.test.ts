/**
 * Sparse local files: their holes are not read (SEEK_DATA / SEEK_HOLE), as qemu-img skips them,
 * and the output is still byte-identical to qemu-img's and sparse. A raw file with a few MiB of
 * data in 256 MiB, and qcow2 images whose clusters are mapped over holes of the file
 * (preallocation=metadata and falloc) are read for their data only.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { dataBytes, makeTempDir, qemuRawSha256, run, sh, sha256File, type TempDir } from '../support/tools.js';

const MiB = 1 << 20;
let dir: TempDir;
before(() => {
  dir = makeTempDir('sparse-file-');
});
after(() => dir.remove());

interface ConvertResult {
  sourceBytes: number;
  bytesWritten: number;
  virtualSize: number;
}

async function convertJson(args: string[]): Promise<ConvertResult> {
  const result = await runCli(['convert', ...args, '-q', '--json']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ConvertResult;
}

/** Writes `count` random bytes at `offset` of `file` without truncating it. */
function writeRandom(file: string, offset: number, count: number): void {
  sh(`head -c ${count} /dev/urandom | dd of=${file} bs=64K seek=${offset} oflag=seek_bytes conv=notrunc status=none`);
}

describe('sparse raw file', () => {
  it('reads only its data ranges and converts byte-identical to qemu-img, sparse', async () => {
    const input = dir.join('sparse.raw');
    // Data at the start, an unaligned piece in the middle, and the last bytes of a file whose size
    // is not a multiple of 512 (qemu pads the tail to a whole sector).
    const size = 256 * MiB + 100;
    sh(`truncate -s ${size} ${input}`);
    writeRandom(input, 0, 3 * MiB);
    writeRandom(input, 100 * MiB + 12345, 2 * MiB);
    writeRandom(input, size - 4000, 4000);
    const inputData = dataBytes(input);
    assert.ok(inputData < 16 * MiB, `the test file should be sparse (${inputData} bytes of data)`);

    const output = dir.join('sparse.out');
    const result = await convertJson([input, output]);
    assert.equal(await sha256File(output), await qemuRawSha256(input, dir.path));
    assert.equal(result.virtualSize, Math.ceil(size / 512) * 512);
    // The data, and the last sector once more (the check for a VHD footer).
    assert.ok(result.sourceBytes <= inputData + 512, `read ${result.sourceBytes} bytes of a file with ${inputData} bytes of data`);
    assert.ok(dataBytes(output) <= inputData + 64 * 1024, `output holds ${dataBytes(output)} bytes of data, input ${inputData}`);
  });

  it('with a checksum, every byte is read (and the image still matches)', async () => {
    const input = dir.join('checked.raw');
    sh(`truncate -s ${64 * MiB} ${input}`);
    writeRandom(input, 10 * MiB, MiB);
    const sha = (await sha256File(input)).toString();
    const output = dir.join('checked.out');
    const result = await runCli(['import', input, '-o', output, '--checksum', `sha256:${sha}`, '-q', '--json', '--no-fsync']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal((JSON.parse(result.stdout) as ConvertResult).sourceBytes, 64 * MiB);
    assert.equal(await sha256File(output), await qemuRawSha256(input, dir.path));
  });

  it('a sparse fixed-size VHD is refused before anything is written', async () => {
    const input = dir.join('fixed.vhd');
    run('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', input, '256M']);
    assert.ok(dataBytes(input) < MiB, 'qemu-img makes the fixed VHD sparse');
    const output = dir.join('fixed.out');
    const result = await runCli(['convert', input, output]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /is a fixed-size VHD image .*qemu-img convert -f vpc -O qcow2/);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.equal(existsSync(output), false, 'no output is left');
  });
});

describe('qcow2 with clusters mapped over holes of the file', () => {
  for (const mode of ['metadata', 'falloc']) {
    it(`preallocation=${mode}: only written clusters are read`, async () => {
      const image = dir.join(`prealloc-${mode}.qcow2`);
      run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `preallocation=${mode}`, image, '512M']);
      run('qemu-io', ['-c', 'write -P 0x5a 1M 3M', '-c', 'write -P 0x11 300M 64k', '-c', 'write -z 400M 1M', image]);
      const output = dir.join(`prealloc-${mode}.out`);
      const result = await convertJson([image, output]);
      assert.equal(await sha256File(output), await qemuRawSha256(image, dir.path));
      // 3 MiB + 64 KiB of guest data, plus the header, L1 and L2 tables (512 MiB / 64 KiB clusters: 64 KiB).
      assert.ok(result.sourceBytes < 4 * MiB, `read ${result.sourceBytes} bytes of a 512 MiB preallocated image`);
      assert.ok(dataBytes(output) <= 4 * MiB, `output holds ${dataBytes(output)} bytes of data`);
    });
  }
});
