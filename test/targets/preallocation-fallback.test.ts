/**
 * Preallocation on a file system without fallocate(2) (ext2 here; NFSv3 and some CSI drivers
 * too): the holes get allocated by writing them, as qemu-img's preallocation=falloc
 * (posix_fallocate) does, instead of the import failing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { mountTmpfs, sharedExt2 } from '../support/loop-device.js';
import { allocatedBytes, escapeRegExp, qemuRawSha256, run, sh, sha256File } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';

const MiB = 1 << 20;
const fs = sharedExt2('48M');

test('--preallocation on ext2 (no fallocate): imported, identical to qemu-img, every block allocated', async (t) => {
  if (!fs.mountPoint) return t.skip('mount is not permitted here');
  const raw = fs.dir.join('disk.raw');
  makeDiskLikeImage(raw, 4 * MiB);
  // The file system really refuses fallocate, or this test would prove nothing.
  const probe = sh(`truncate -s 1M ${fs.mountPoint}/probe && (fallocate -l 1M ${fs.mountPoint}/probe 2>&1 || true); rm -f ${fs.mountPoint}/probe`);
  assert.match(probe, /Operation not supported/);

  const out = `${fs.mountPoint}/disk.img`;
  const result = await runCli(['import', raw, '-o', out, '--size', '20Mi', '--filesystem-overhead', '0', '--preallocation', '--json']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(JSON.parse(result.stdout).preallocationApplied, true);
  assert.equal(statSync(out).size, 20 * MiB);
  assert.ok(allocatedBytes(out) >= 20 * MiB, `allocated ${allocatedBytes(out)}`);
  assert.equal(await sha256File(out), await qemuRawSha256(raw, fs.dir.path, 20 * MiB));
});

// Found by a QA pass: util-linux's `fallocate --posix` exits 0 when posix_fallocate fails, and
// `convert -o preallocation=full` reported a sparse file on a full disk as preallocated.
test('convert -o preallocation=full onto ext2 (no fallocate) with too little room: the no-space error, no output', async (t) => {
  if (!fs.mountPoint) return t.skip('mount is not permitted here');
  const qcow2 = mostlyEmptyQcow2('big');
  const before = readdirSync(fs.mountPoint);
  await expectNoRoom(['convert', '-o', 'preallocation=full', qcow2, `${fs.mountPoint}/big.img`], `${fs.mountPoint}/big.img`);
  assert.deepEqual(readdirSync(fs.mountPoint), before);
});

test('convert -o preallocation=falloc and full onto a tmpfs with too little room (fallocate fails): the no-space error, no output', async (t) => {
  const mount = mountTmpfs(t, fs.dir.path, '40m');
  if (!mount) return;
  const qcow2 = mostlyEmptyQcow2('big64');
  for (const mode of ['falloc', 'full']) {
    await expectNoRoom(['convert', '-o', `preallocation=${mode}`, qcow2, `${mount}/${mode}.img`], `${mount}/${mode}.img`);
  }
  assert.deepEqual(readdirSync(mount), []);
});

async function expectNoRoom(args: string[], out: string): Promise<void> {
  const result = await runCli([...args, '--json']);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, new RegExp(`no space left on the device to preallocate ${escapeRegExp(out)}: free some space, use a larger volume, or import without preallocation`));
  assert.equal(result.stdout.includes('"preallocationApplied":true'), false, result.stdout);
  assert.equal(existsSync(out), false);
}

/** A 64 MiB disk with 4 MiB of data: the data fits, the whole disk does not. */
function mostlyEmptyQcow2(name: string): string {
  const raw = fs.dir.join(`${name}.raw`);
  makeDiskLikeImage(raw, 4 * MiB);
  run('truncate', ['-s', '64M', raw]);
  const qcow2 = fs.dir.join(`${name}.qcow2`);
  run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  return qcow2;
}
