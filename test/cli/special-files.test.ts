/**
 * Sources and destinations that are not regular files: a stalled pipe on stdin (a signal must
 * cancel at once), a named pipe given as a path (opened once), and destinations that must never
 * be renamed over (devices, pipes, the source itself), or followed (a symlink to the real file).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, renameSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, copyFileSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { open } from 'node:fs/promises';
import { cliCommand, repoRoot, runCli } from '../support/cli.js';
import { makeTempDir, qemuRawSha256, run, sha256File, type TempDir } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { buildLauncher } from '../support/launcher.js';

const MiB = 1 << 20;
let dir: TempDir;
let raw: string;
let qcow2: string;
let qcow2Sha: string;

before(async () => {
  dir = makeTempDir();
  raw = dir.join('disk.raw');
  makeDiskLikeImage(raw, 8 * MiB);
  qcow2 = dir.join('disk.qcow2');
  run('qemu-img', ['convert', '-O', 'qcow2', raw, qcow2]);
  qcow2Sha = await qemuRawSha256(qcow2, dir.path);
});
after(() => dir.remove());

const leftovers = (prefix: string) => readdirSync(dir.path).filter((n) => n.startsWith(prefix) || n.startsWith(`.${prefix}`));

describe('sources', () => {
  test('an endless device (/dev/zero, /dev/urandom) or a terminal is refused at once, not read until the disk fills', async () => {
    const cases: [string, RegExp][] = [
      ['/dev/zero', /^cdi-importer: error: source \/dev\/zero is a device that reads as endless zeros, not a disk image: give the image's file$/],
      ['/dev/urandom', /^cdi-importer: error: source \/dev\/urandom is a device that reads as endless random bytes, not a disk image/],
      ['/dev/ptmx', /^cdi-importer: error: source \/dev\/ptmx is a terminal, not a disk image/],
    ];
    for (const [device, message] of cases) {
      for (const args of [['convert', device, dir.join('endless.raw')], ['import', device, '-o', dir.join('endless.img'), '--size', '64Mi'], ['info', device]]) {
        const result = await runCli(args, { timeoutMs: 20_000 });
        assert.equal(result.code, 1, `${args.join(' ')}: ${result.stderr}`);
        assert.match(result.stderr.trim(), message);
      }
    }
    // The same device as standard input (`convert - out < /dev/zero`).
    for (const args of [['convert', '-', dir.join('endless.raw')], ['info', '-']]) {
      const zero = openSync('/dev/zero', 'r');
      const child = spawn(process.execPath, [...cliCommand, ...args], { cwd: repoRoot, stdio: [zero, 'ignore', 'pipe'] });
      closeSync(zero);
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const [code] = (await once(child, 'close')) as [number | null];
      clearTimeout(timer);
      assert.equal(code, 1, stderr);
      assert.match(stderr.trim(), /^cdi-importer: error: standard input is a device that reads as endless zeros, not a disk image/);
    }
    assert.deepEqual(leftovers('endless'), []);
  });

  // SIGHUP: the terminal closed, or the SSH session running the import dropped.
  for (const stopSignal of ['SIGTERM', 'SIGHUP'] as const) test(`${stopSignal} while stdin is a stalled pipe: cancelled at once, nothing left behind`, async () => {
    const child = spawn(process.execPath, [...cliCommand, 'import', '-', dir.join('stalled.img'), '--quiet'], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.stdin.on('error', () => {});
    child.stdin.write(Buffer.alloc(2 * MiB, 7)); // then nothing more: the pipe stays open
    // Wait until the import is writing (its temporary file exists), then ask it to stop.
    for (let i = 0; i < 200 && leftovers('stalled.img').length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.notDeepEqual(leftovers('stalled.img'), [], `the import never started: ${stderr}`);
    const started = Date.now();
    child.kill(stopSignal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const [code] = (await once(child, 'close')) as [number | null];
    clearTimeout(timer);
    child.stdin.destroy();
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms to stop`);
    assert.equal(code, 1, stderr);
    assert.match(stderr.trim(), /cancel/i);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
    assert.deepEqual(leftovers('stalled.img'), [], 'no output, no temporary file');
  });

  test("Ctrl-C on a pipeline whose feeder ends first: said as cancelled, not as truncated data", async () => {
    // At a terminal, SIGINT reaches every command of `curl … | cdi-importer convert -`; the feeder's
    // end may be read before our own signal arrives.
    const xz = dir.join('disk.raw.xz');
    run('xz', ['-k', '-T1', '-0', raw]);
    const half = readFileSync(xz).subarray(0, statSync(xz).size >> 1);
    const child = spawn(process.execPath, [...cliCommand, 'convert', '-', dir.join('pipeline.img'), '--quiet'], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.stdin.on('error', () => {});
    child.stdin.write(half);
    for (let i = 0; i < 200 && leftovers('pipeline.img').length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.notDeepEqual(leftovers('pipeline.img'), [], `the import never started: ${stderr}`);
    child.stdin.end();
    await new Promise((resolve) => setTimeout(resolve, 30));
    child.kill('SIGINT');
    const [code] = (await once(child, 'close')) as [number | null];
    assert.equal(code, 1, stderr);
    assert.equal(stderr.trim(), 'cdi-importer: error: conversion cancelled: received SIGINT');
    assert.deepEqual(leftovers('pipeline.img'), []);
  });

  test('a named pipe given as a path: read once, converted as qemu-img does', async () => {
    const fifo = dir.join('image.fifo');
    run('mkfifo', [fifo]);
    // The writer sends the whole qcow2 and closes: a second open of the FIFO would wait forever.
    const writer = spawn('sh', ['-c', `cat ${qcow2} > ${fifo}`]);
    const written = once(writer, 'close');
    const result = await runCli(['convert', fifo, dir.join('from-fifo.raw'), '--json'], { timeoutMs: 30_000 });
    await written;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(dir.join('from-fifo.raw')), qcow2Sha);
  });
});

describe('destinations', () => {
  // Stand-ins made here, never the machine's own /dev/null or /dev/stdout: a regression would replace them.
  test('a character device or a named pipe is refused, and stays what it was', async (t) => {
    const fifo = dir.join('out.fifo');
    run('mkfifo', [fifo]);
    const destinations = [fifo];
    const nullDevice = dir.join('null');
    try {
      run('mknod', ['-m', '666', nullDevice, 'c', '1', '3'], { stdio: 'pipe' });
      destinations.push(nullDevice);
    } catch {
      t.diagnostic('mknod is not permitted here: the named pipe stands for both');
    }
    for (const dest of destinations) {
      const before = lstatSync(dest);
      const result = await runCli(['convert', qcow2, dest]);
      assert.equal(result.code, 1, `${dest}: ${result.stderr}`);
      assert.match(result.stderr, /is a (character device|named pipe): give a regular file/);
      const now = lstatSync(dest);
      assert.deepEqual([now.ino, now.mode, now.rdev], [before.ino, before.mode, before.rdev], `${dest} was replaced`);
    }
    assert.deepEqual(leftovers('out.fifo'), ['out.fifo']);
  });

  test('a link to a file descriptor (as /dev/stdout is) is refused, even when it leads to a file', async () => {
    const stdoutLink = dir.join('stdout');
    symlinkSync('/proc/self/fd/1', stdoutLink);
    const result = await runCli(['convert', qcow2, stdoutLink]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /is a link to an open file descriptor/);
    assert.equal(readlinkSync(stdoutLink), '/proc/self/fd/1');
  });

  test('a device name that does not exist is refused, not created as a file in /dev; /dev/shm takes files', async () => {
    // Found by a QA pass: `import disk.img /dev/sdz9` made a 64 MiB file in devtmpfs and exited 0.
    const missing = `/dev/cdi-importer-test-missing-${process.pid}`;
    const result = await runCli(['convert', qcow2, missing]);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr.trim(), `cdi-importer: error: ${missing} does not exist: there is no such device, and a new file in /dev would live in memory, not on a disk; check the device name (lsblk lists them)`);
    assert.equal(existsSync(missing), false);
    if (!existsSync('/dev/shm')) return;
    const shm = `/dev/shm/cdi-importer-test-${process.pid}.raw`;
    try {
      const written = await runCli(['convert', qcow2, shm, '-q']);
      assert.equal(written.code, 0, written.stderr);
      assert.equal(await sha256File(shm), await qemuRawSha256(qcow2, dir.path));
    } finally {
      rmSync(shm, { force: true });
    }
  });

  test('the source itself is refused as the destination', async () => {
    const copy = dir.join('same.qcow2');
    copyFileSync(qcow2, copy);
    const before = await sha256File(copy);
    const result = await runCli(['convert', copy, copy]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /is the source image itself/);
    assert.equal(await sha256File(copy), before);
    // Standard input redirected from it is the same file: refused the same way.
    const cli = [process.execPath, ...cliCommand].map((word) => `'${word}'`).join(' ');
    const fromStdin = spawnSync('bash', ['-c', `${cli} convert - '${copy}' < '${copy}'`], { cwd: repoRoot, encoding: 'utf8' });
    assert.equal(fromStdin.status, 1, fromStdin.stderr);
    assert.match(fromStdin.stderr, /same\.qcow2 is the source image itself/);
    assert.equal(await sha256File(copy), before);
  });

  test('a symlink to a disk file: the file it points to is replaced, the link stays', async () => {
    const real = dir.join('real.img');
    copyFileSync(raw, real);
    const link = dir.join('link.img');
    symlinkSync(real, link);
    const result = await runCli(['convert', qcow2, link]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(lstatSync(link).isSymbolicLink());
    assert.equal(await sha256File(real), qcow2Sha);
    assert.ok(existsSync(link) && statSync(link).ino === statSync(real).ino);
  });

  test('a dangling symlink: the file it names is created and the link kept (as qemu-img does); a loop is refused', async () => {
    const link = dir.join('next-build.img');
    symlinkSync('builds-42.img', link);
    const result = await runCli(['convert', qcow2, link]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(lstatSync(link).isSymbolicLink(), 'the link is still a link');
    assert.equal(await sha256File(dir.join('builds-42.img')), qcow2Sha);

    symlinkSync('loop-b.img', dir.join('loop-a.img'));
    symlinkSync('loop-a.img', dir.join('loop-b.img'));
    const loop = await runCli(['convert', qcow2, dir.join('loop-a.img')]);
    assert.equal(loop.code, 1);
    assert.match(loop.stderr, /^cdi-importer: error: \S*loop-a\.img: too many levels of symbolic links/m);
    assert.ok(lstatSync(dir.join('loop-a.img')).isSymbolicLink(), 'the loop is left alone');

    // A link reached through a directory link: `../` is taken from where the link really is, as
    // the kernel (and qemu-img) take it, not from the path as written.
    mkdirSync(dir.join('real', 'sub'), { recursive: true });
    symlinkSync(dir.join('real', 'sub'), dir.join('dirlink'));
    symlinkSync('../through-dirlink.img', dir.join('real', 'sub', 'l.img'));
    const through = await runCli(['convert', qcow2, dir.join('dirlink', 'l.img')]);
    assert.equal(through.code, 0, through.stderr);
    assert.equal(await sha256File(dir.join('real', 'through-dirlink.img')), qcow2Sha);
    assert.equal(existsSync(dir.join('through-dirlink.img')), false, 'nothing written beside the directory link');

    // `..` right after a directory link inside a link's target, and in -o itself: the kernel's
    // reading (the parent of what dirlink points to), as qemu-img and `cat` see it.
    symlinkSync('dirlink/../inner.img', dir.join('inner-link.img'));
    const inner = await runCli(['convert', qcow2, dir.join('inner-link.img')]);
    assert.equal(inner.code, 0, inner.stderr);
    assert.equal(await sha256File(dir.join('real', 'inner.img')), qcow2Sha);
    assert.equal(existsSync(dir.join('inner.img')), false);
    const dotted = await runCli(['convert', qcow2, `${dir.join('dirlink')}/../dotted.img`]);
    assert.equal(dotted.code, 0, dotted.stderr);
    assert.equal(await sha256File(dir.join('real', 'dotted.img')), qcow2Sha);
    assert.equal(existsSync(dir.join('dotted.img')), false);

    symlinkSync(dir.join('no-such-dir', 'x.img'), dir.join('into-nowhere.img'));
    const nowhere = await runCli(['convert', qcow2, dir.join('into-nowhere.img')]);
    assert.equal(nowhere.code, 1);
    assert.match(nowhere.stderr, /destination directory of \S*into-nowhere\.img \(that is, \S*no-such-dir\/x\.img\) does not exist/);
  });
});

describe('cancelled at any moment', () => {
  test('--timeout from opening to the last write of a raw, gzip or xz import: one line and exit 1 (or a finished import), never a crash, a silent exit 0 or a .partial file', async () => {
    const disk = dir.join('cancel.raw');
    makeDiskLikeImage(disk, 96 * MiB);
    run('sh', ['-c', `gzip -1 -kf ${disk} && xz -T2 -1 -kf ${disk}`]);
    const expected = await sha256File(disk);
    for (const source of [disk, `${disk}.gz`, `${disk}.xz`]) {
      for (const seconds of ['0.001', '0.02', '0.08', '0.2', '0.4']) {
        const out = dir.join('cancelled.img');
        const result = await runCli(['import', source, out, '--timeout', seconds, '--json']);
        const what = `${source} --timeout ${seconds}: rc ${result.code}, ${result.stderr}`;
        assert.doesNotMatch(result.stderr, /Unhandled|node:internal/, what);
        if (result.code === 0) {
          assert.equal(JSON.parse(result.stdout).ok, true, what);
          assert.equal(await sha256File(out), expected, what);
        } else {
          assert.equal(result.code, 1, what);
          assert.deepEqual(JSON.parse(result.stdout), { ok: false, category: 'cancelled', error: `the import did not finish within ${seconds} s (--timeout): give a longer --timeout, or none for no limit` }, what);
          assert.equal(existsSync(out), false, what);
        }
        assert.deepEqual(leftovers('cancelled.img').filter((name) => name.includes('.partial-')), [], what);
        rmSync(out, { force: true });
      }
    }
  });
});

describe('info cancelled', () => {
  test('Ctrl-C while info waits on a pipe: one line saying so, exit 1', async () => {
    const fifo = dir.join('info-input.fifo');
    run('mkfifo', [fifo]);
    const child = spawn(process.execPath, [...cliCommand, 'info', fifo], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const closed = once(child, 'close') as Promise<[number | null]>;
    // Opening the write end returns once info has opened the read end: it is running by then,
    // however long the start took (a signal during Node's own start is Node's to handle).
    const writer = await open(fifo, 'w');
    await writer.write(Buffer.alloc(100)); // too little to tell the format: info keeps waiting
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGINT');
    // Then the writer goes, as a terminal's Ctrl-C also ends the command writing into the pipe.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await writer.close();
    const [code] = await closed;
    assert.equal(code, 1, stderr);
    assert.equal(stderr.trim(), 'cdi-importer: error: info cancelled: received SIGINT');
  });
});

describe('the terminal and the working directory', () => {
  test('a destination named with a line break and an escape sequence: the summary stays one line and sends no escape', async () => {
    const out = dir.join('a\nb\u001b[2J.raw');
    const result = await runCli(['import', qcow2, '-o', out, '--no-fsync']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr.split('\n').length, 2, result.stderr);
    assert.match(result.stderr, /to .*a\\u000ab\\u001b\[2J\.raw in /);
    assert.ok(existsSync(out));
  });

  test('a working directory deleted under the command: relative paths get one line (exit 2), absolute ones still work', async () => {
    // The real launcher: tsx itself needs a working directory to start.
    mkdirSync(dir.join('launcher'));
    const cli = `'${process.execPath}' '${await buildLauncher(dir.join('launcher'))}'`;
    const gone = dir.join('gone');
    const inGone = (args: string) => spawnSync('bash', ['-c', `mkdir -p '${gone}' && cd '${gone}' && rmdir '${gone}' && ${cli} ${args}`], { encoding: 'utf8' });
    const relative = inGone(`import '${qcow2}' x.raw`);
    assert.equal(relative.status, 2, relative.stderr);
    assert.equal(relative.stderr, 'cdi-importer: error: the current directory no longer exists (it was deleted): cd to an existing directory, or give absolute paths\n');
    const absolute = inGone(`convert '${qcow2}' '${dir.join('from-gone.raw')}' -q`);
    assert.equal(absolute.status, 0, absolute.stderr);
  });
});

test('the output directory moved away mid-import: one line saying so, and the temporary file removed from where it went', async () => {
  const out = dir.join('moving', 'x.raw');
  mkdirSync(dir.join('moving'));
  const input = new PassThrough();
  const running = runCli(['import', '-', '-o', out, '-q'], { input });
  input.write(Buffer.alloc(4 << 20, 0x5a));
  while (!readdirSync(dir.join('moving')).some((name) => name.startsWith('.x.raw.partial-'))) await new Promise((resolve) => setTimeout(resolve, 10));
  renameSync(dir.join('moving'), dir.join('moved'));
  mkdirSync(dir.join('moving'));
  input.end(Buffer.alloc(4 << 20, 0x5b));
  const result = await running;
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stderr, `cdi-importer: error: ${dir.join('moving')} was moved or replaced during the import, so the image was not put in place: import it again\n`);
  assert.deepEqual(readdirSync(dir.join('moved')), []);
  assert.deepEqual(readdirSync(dir.join('moving')), []);
});
