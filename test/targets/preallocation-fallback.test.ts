/**
 * Preallocation on a file system without fallocate(2) (ext2 here; NFSv3 and some CSI drivers
 * too): the holes get allocated by writing them, as qemu-img's preallocation=falloc
 * (posix_fallocate) does, instead of the import failing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { mountExt2 } from '../support/loop-device.js';
import { allocatedBytes, makeTempDir, qemuRawSha256, run, sh, sha256File, type TempDir } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';

const MiB = 1 << 20;
let dir: TempDir;
let mountPoint: string | undefined;

before(() => {
  dir = makeTempDir();
  mountPoint = mountExt2(dir.path, '48M');
});

after(() => {
  if (mountPoint) run('umount', [mountPoint]);
  dir.remove();
});

test('--preallocation on ext2 (no fallocate): imported, identical to qemu-img, every block allocated', async (t) => {
  if (!mountPoint) return t.skip('mount is not permitted here');
  const raw = dir.join('disk.raw');
  makeDiskLikeImage(raw, 4 * MiB);
  // The file system really refuses fallocate, or this test would prove nothing.
  const probe = sh(`truncate -s 1M ${mountPoint}/probe && (fallocate -l 1M ${mountPoint}/probe 2>&1 || true); rm -f ${mountPoint}/probe`);
  assert.match(probe, /Operation not supported/);

  const out = `${mountPoint}/disk.img`;
  const result = await runCli(['import', raw, '-o', out, '--size', '20Mi', '--filesystem-overhead', '0', '--preallocation', '--json']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(JSON.parse(result.stdout).preallocationApplied, true);
  assert.equal(statSync(out).size, 20 * MiB);
  assert.ok(allocatedBytes(out) >= 20 * MiB, `allocated ${allocatedBytes(out)}`);
  assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path, 20 * MiB));
});
