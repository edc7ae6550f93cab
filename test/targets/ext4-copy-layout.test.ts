/**
 * The native copy between files onto ext4: the output holds the blocks qemu-img's does (no zero
 * block of a data cluster allocated), laid out as few extents as qemu-img's (a copy that allocated
 * each MiB's blocks before writing them, from two threads, left a 64 MiB disk in 600 pieces; found
 * by a QA pass), and a file system without room fails as a write does, in one line, with nothing
 * left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { sharedExt2 } from '../support/loop-device.js';
import { qemuImg, qemuIo } from '../qcow2/images.js';
import { allocatedBytes, run, sh, sha256File } from '../support/tools.js';

const MiB = 1 << 20;
const fs = sharedExt2('200M', ['-t', 'ext4', '-b', '4096']);

test('a qcow2 copied onto ext4: the same bytes and the same allocated blocks as qemu-img convert', async (t) => {
  if (!fs.mountPoint) return t.skip('mount is not permitted here');
  assert.match(run('findmnt', ['-n', '-o', 'FSTYPE', fs.mountPoint]), /ext4/);
  const image = fs.dir.join('holes.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', image, '24M');
  // Data clusters with zero 4 KiB blocks inside (at their start, middle and end), whole zero
  // clusters between data, and runs that cross the 1 MiB chunks the copy reads.
  qemuIo(image, 'write -P 0x11 0 3M', 'write -z 4096 8192', 'write -z 1M 4096', 'write -z 2M 60k', 'write -P 0x22 5M 1536k', 'write -P 0 5632k 64k');
  qemuIo(image, 'write -P 0x33 20M 4k', 'write -P 0x44 23M 1M');
  const ours = `${fs.mountPoint}/ours.raw`;
  const result = await runCli(['convert', image, ours]);
  assert.equal(result.code, 0, result.stderr);
  const reference = `${fs.mountPoint}/reference.raw`;
  qemuImg('convert', '-O', 'raw', image, reference);
  assert.equal(await sha256File(ours), await sha256File(reference));
  // Written back first: until then a delayed allocation counts no block for the extent tree.
  run('sync', ['-f', ours]);
  assert.equal(allocatedBytes(ours), allocatedBytes(reference), 'blocks allocated: ours against qemu-img');
  rmSync(ours);
  rmSync(reference);
});

test('64 MiB of contiguous data copied onto ext4: as few extents as qemu-img convert leaves', async (t) => {
  if (!fs.mountPoint) return t.skip('mount is not permitted here');
  const image = fs.dir.join('contiguous.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', image, '72M');
  qemuIo(image, 'write -P 0x5a 4M 64M');
  const ours = `${fs.mountPoint}/contiguous-ours.raw`;
  const result = await runCli(['convert', image, ours]);
  assert.equal(result.code, 0, result.stderr);
  const reference = `${fs.mountPoint}/contiguous-reference.raw`;
  qemuImg('convert', '-O', 'raw', image, reference);
  run('sync', ['-f', ours]);
  const extents = (file: string) => Number(/(\d+) extents? found/.exec(run('filefrag', [file]))![1]);
  assert.ok(extents(ours) <= extents(reference) + 4, `extents: ours ${extents(ours)}, qemu-img's ${extents(reference)}`);
  rmSync(ours);
  rmSync(reference);
});

test('a qcow2 whose data does not fit the ext4 file system: the no-space line, exit 1, nothing left', async (t) => {
  if (!fs.mountPoint) return t.skip('mount is not permitted here');
  const raw = fs.dir.join('random.raw');
  sh(`head -c ${240 * MiB} /dev/urandom > ${raw}`);
  const image = fs.dir.join('random.qcow2');
  qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image);
  const before = readdirSync(fs.mountPoint);
  const result = await runCli(['convert', image, `${fs.mountPoint}/full.raw`]);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr.trim(), /^cdi-importer: error: no space left on the device while writing \S+full\.raw/);
  assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  assert.deepEqual(readdirSync(fs.mountPoint), before);
});
