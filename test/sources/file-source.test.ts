/**
 * The file source: regular files, and paths that cannot seek (a FIFO, as `<(…)` gives), read to
 * the end and imported byte-exact.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { runCli } from '../support/cli.js';
import { makeTempDir, qemuRawSha256, sha256File, sh, type TempDir } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';

let dir: TempDir;
before(() => {
  dir = makeTempDir();
  makeDiskLikeImage(dir.join('disk.raw'), 5 * (1 << 20) + 512);
  sh(`cd ${dir.path} && zstd -q disk.raw`);
});
after(() => dir.remove());

test('a regular file and a FIFO holding the same zstd image import identically', async () => {
  const expected = await qemuRawSha256(dir.join('disk.raw'), dir.path);
  const fromFile = await runCli(['convert', dir.join('disk.raw.zst'), dir.join('file.img'), '-q']);
  assert.equal(fromFile.code, 0, fromFile.stderr);
  assert.equal(await sha256File(dir.join('file.img')), expected);

  sh(`mkfifo ${dir.join('fifo')}`);
  const writer = spawn('bash', ['-c', `cat ${dir.join('disk.raw.zst')} > ${dir.join('fifo')}`]);
  const written = new Promise((resolve) => writer.on('close', resolve));
  const fromFifo = await runCli(['convert', dir.join('fifo'), dir.join('fifo.img'), '-q']);
  await written;
  assert.equal(fromFifo.code, 0, fromFifo.stderr);
  assert.equal(await sha256File(dir.join('fifo.img')), expected);
});
