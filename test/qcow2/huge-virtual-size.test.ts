/**
 * qcow2 images of 8 PiB or more are valid (qemu-img makes them) but past what a JavaScript number
 * holds exactly: refused as beyond cdi-importer, not called corrupt. Just under the line, described.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { makeTempDir, run } from '../support/tools.js';

const dir = makeTempDir();
after(() => dir.remove());

test('an 8 PiB qcow2 is refused as beyond what cdi-importer supports; a 7 PiB one is described', async () => {
  const big = dir.join('8p.qcow2');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', big, '8P']);
  for (const args of [['info', big], ['convert', big, dir.join('8p.raw')]]) {
    const result = await runCli(args);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr, `cdi-importer: error: ${big}: qcow2 image has a virtual size of 9007199254740992 bytes, beyond the largest cdi-importer supports (8 PiB less 1 byte)\n`);
  }
  assert.equal(existsSync(dir.join('8p.raw')), false);
  const below = dir.join('7p.qcow2');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', below, '7P']);
  const info = await runCli(['info', below, '--json']);
  assert.equal(info.code, 0, info.stderr);
  assert.equal((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size'], 7 * 2 ** 50);
});
