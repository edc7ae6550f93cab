/**
 * The file source: regular files, and paths that cannot seek (a FIFO, as `<(…)` gives), read to
 * the end and imported byte-exact.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, statSync, truncateSync } from 'node:fs';
import { FileSource } from '../../src/sources/file-source.js';
import { cliCommand, repoRoot, runCli } from '../support/cli.js';
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

describe('a source file that changes size while it is read', () => {
  const MiB = 1 << 20;
  const consume = async (stream: NodeJS.ReadableStream) => {
    let bytes = 0;
    for await (const chunk of stream) bytes += (chunk as Buffer).length;
    return bytes;
  };

  test('shrunk after it was measured: the stream fails in words instead of ending early (the tail would be zeros)', async () => {
    const file = dir.join('shrinks.raw');
    sh(`head -c ${4 * MiB} /dev/urandom > ${file}`);
    const opened = await new FileSource(file).open(new AbortController().signal);
    truncateSync(file, MiB + 5);
    await assert.rejects(consume(opened.stream), new RegExp(`^ImportError: cannot read source file ${file}: it ended before the data it should hold \\(did it shrink while being read\\?\\)$`));
    await opened.randomAccess?.close();
  });

  test('grown after it was measured: the image is the file as it was (what qemu-img reads too)', async () => {
    const file = dir.join('grows.raw');
    sh(`head -c ${3 * MiB + 512} /dev/urandom > ${file}`);
    const opened = await new FileSource(file).open(new AbortController().signal);
    sh(`head -c ${MiB} /dev/urandom >> ${file}`);
    assert.equal(await consume(opened.stream), 3 * MiB + 512);
    await opened.randomAccess?.close();
  });

  test('a file that says a larger size than it holds (sysfs says 4096) is read as it is, as qemu-img reads it', async (t) => {
    const file = '/sys/kernel/mm/transparent_hugepage/enabled';
    if (!existsSync(file)) return t.skip(`${file} is not here`);
    const out = dir.join('sysfs.img');
    const result = await runCli(['convert', file, out, '-q']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(out), await qemuRawSha256(file, dir.path));
  });

  test('a sparse file cut below its last data: its data map says so instead of "no more data"', async (t) => {
    const file = dir.join('sparse-shrinks.raw');
    sh(`truncate -s ${8 * MiB} ${file} && head -c ${MiB} /dev/urandom | dd of=${file} bs=1M seek=6 conv=notrunc status=none`);
    const opened = await new FileSource(file).open(new AbortController().signal);
    const dataMap = opened.randomAccess?.dataMap;
    if (!dataMap) return t.skip('no SEEK_DATA here (fs-ext did not build)');
    truncateSync(file, 3 * MiB);
    await assert.rejects(dataMap.nextData(4 * MiB), /^ImportError: cannot read source file .*sparse-shrinks\.raw: it ended before the data it should hold/);
    opened.stream.destroy();
    await opened.randomAccess?.close();
  });

  test('end to end: a raw image cut while it is converted fails, leaving no output', async () => {
    const file = dir.join('cut.raw');
    const out = dir.join('cut.img');
    sh(`head -c ${96 * MiB} /dev/urandom > ${file}`);
    const child = spawn(process.execPath, [...cliCommand, 'convert', file, out, '-q'], { cwd: repoRoot });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const closed = once(child, 'close');
    // Paused once it has written its first MiB, so the cut lands mid-import whatever the machine's speed.
    const partial = () => readdirSync(dir.path).find((name) => name.startsWith('.cut.img.partial-'));
    while (child.exitCode === null && !(partial() && statSync(dir.join(partial()!)).blocks * 512 >= MiB)) await new Promise((resolve) => setTimeout(resolve, 2));
    child.kill('SIGSTOP');
    truncateSync(file, 40 * MiB);
    child.kill('SIGCONT');
    const [code] = await closed;
    assert.equal(code, 1, stderr);
    assert.equal(stderr, `cdi-importer: error: cannot read source file ${file}: it ended before the data it should hold (did it shrink while being read?)\n`);
    assert.equal(existsSync(out), false);
    assert.equal(partial(), undefined);
  });
});
