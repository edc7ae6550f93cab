/**
 * A file system with free blocks but no free inodes cannot take the temporary file an import
 * writes: said as that (df -i), not as "no space left … free some space".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { sharedExt2 } from '../support/loop-device.js';
import { run } from '../support/tools.js';

const fs = sharedExt2('32M', ['-N', '16']);

test('no free inodes: one line that says so, exit 1, nothing left', async (t) => {
  if (!fs.mountPoint) return t.skip('mount is not permitted here');
  // Use up every inode (the root, lost+found and the reserved ones already hold some).
  for (let i = 0; ; i++) {
    try {
      writeFileSync(`${fs.mountPoint}/f${i}`, '');
    } catch {
      break;
    }
  }
  const image = fs.dir.join('small.qcow2');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', image, '4M']);
  const before = readdirSync(fs.mountPoint).sort();
  const result = await runCli(['convert', image, `${fs.mountPoint}/disk.raw`]);
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stderr, `cdi-importer: error: no free inodes left on the file system of ${fs.mountPoint}/disk.raw (see df -i): remove some files there, or write it elsewhere\n`);
  assert.deepEqual(readdirSync(fs.mountPoint).sort(), before);
});
