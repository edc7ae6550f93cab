/**
 * The file source: regular files, and paths that cannot seek (a FIFO, as `<(…)` gives), read to
 * the end and imported byte-exact.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
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

// strace's fault injection stands in for a failing disk: the Nth read of the source file gets EIO.
for (const { name, file, syscall } of [
  { name: 'read in order (a raw.zst)', file: 'disk.raw.zst', syscall: 'read' },
  { name: 'read by random access (a qcow2)', file: 'disk.qcow2', syscall: 'pread64' },
]) {
  test(`a source file that fails mid-import, ${name}: one line naming it, bad input, nothing left`, async () => {
    if (!existsSync(dir.join('disk.qcow2'))) sh(`qemu-img convert -O qcow2 ${dir.join('disk.raw')} ${dir.join('disk.qcow2')}`);
    const source = dir.join(file);
    const out = dir.join(`eio-${syscall}.img`);
    const result = await runCli(['convert', source, out, '--json'], {
      // One thread-pool thread: strace counts each thread's calls apart, so the third read is then the import's third.
      env: { UV_THREADPOOL_SIZE: '1' },
      wrap: ['strace', '-f', '-qq', '-o', '/dev/null', '-P', source, '-e', `trace=${syscall}`, '-e', `inject=${syscall}:error=EIO:when=3`],
    });
    assert.equal(result.code, 1, result.stderr);
    const report = JSON.parse(result.stdout) as { category: string; error: string };
    assert.equal(report.category, 'bad-input', result.stdout);
    assert.match(report.error, new RegExp(`^cannot read source file ${source.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: input/output error \\(EIO\\): the disk or network file system holding it may be failing$`));
    assert.equal(existsSync(out), false, 'no output file');
  });
}
