/**
 * A disk larger than the largest file its file system allows (ext2 with 1 KiB blocks: 16 GiB;
 * ext4: 16 TiB) is refused before anything is written, in words, not with EFBIG after the data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { sharedExt2 } from '../support/loop-device.js';
import { run } from '../support/tools.js';

const fs = sharedExt2('32M', ['-b', '1024']);

test('a 20 GiB disk on a file system whose largest file is 16 GiB: refused before writing, saying why', async (t) => {
  if (!fs.mountPoint) return t.skip('mount is not permitted here');
  const image = fs.dir.join('big.qcow2');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', image, '20G']);
  run('qemu-io', ['-c', 'write -P 1 0 4M', image]);
  const result = await runCli(['convert', image, `${fs.mountPoint}/out.raw`]);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /out\.raw cannot be 20\.0 GiB: that is larger than the largest file its file system allows \(EFBIG\); write it to a block device or to a file system that allows larger files/);
  assert.equal(result.stderr.trim().split('\n').length, 1);
  assert.deepEqual(readdirSync(fs.mountPoint).filter((n) => n !== 'lost+found'), []);
});
