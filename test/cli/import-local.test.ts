/**
 * Local imports through the real binary: every compression of raw and ISO images from files and
 * stdin, resize, preallocation, checksums. qemu-img is the oracle for every expected hash.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { cliCommand, runCli } from '../support/cli.js';
import { allocatedBytes, dataBytes, makeTempDir, qemuRawSha256, run, sh, sha256File, type TempDir } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';

const MiB = 1 << 20;
let dir: TempDir;
let raw: string;
let iso: string;
let rawSha: string;

before(() => {
  dir = makeTempDir();
  raw = dir.join('disk.raw');
  makeDiskLikeImage(raw, 9 * MiB + 12345); // not a multiple of anything convenient
  iso = dir.join('cd.iso');
  // An ISO 9660 primary volume descriptor ("CD001" at 32769) followed by data.
  makeDiskLikeImage(iso, 3 * MiB);
  sh(`printf '\\001CD001\\001' | dd of=${iso} bs=1 seek=32768 conv=notrunc status=none`);
  for (const file of [raw, iso]) {
    sh(`gzip -kf ${file} && xz -kf -T1 ${file} && zstd -qf ${file}`);
  }
  // Nested layers: gzip inside xz, zstd inside gzip.
  sh(`gzip -c ${raw} | xz -T1 -c > ${raw}.gz.xz`);
  sh(`zstd -qc ${raw} | gzip -c > ${raw}.zst.gz`);
});

after(() => dir.remove());

function leftovers(): string[] {
  return readdirSync(dir.path).filter((name) => name.startsWith('.') && name.includes('.partial-'));
}

describe('raw and ISO images, every compression, from a file', () => {
  for (const name of ['disk.raw', 'disk.raw.gz', 'disk.raw.xz', 'disk.raw.zst', 'disk.raw.gz.xz', 'disk.raw.zst.gz', 'cd.iso', 'cd.iso.gz', 'cd.iso.xz', 'cd.iso.zst']) {
    test(name, async () => {
      const base = name.startsWith('cd') ? iso : raw;
      rawSha ??= await qemuRawSha256(raw, dir.path);
      const expected = await qemuRawSha256(base, dir.path);
      const out = dir.join(`out-${name}.img`);
      const result = await runCli(['import', dir.join(name), '-o', out, '--json']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await sha256File(out), expected);
      const json = JSON.parse(result.stdout);
      assert.equal(json.ok, true);
      assert.equal(json.virtualSize, qemuVirtualSize(base));
      assert.equal(json.formats.at(-1), name.startsWith('cd') ? 'iso' : 'raw');
      // Sparse: no more blocks than qemu-img's own output.
      const oracle = dir.join(`oracle-${name}.raw`);
      run('qemu-img', ['convert', '-O', 'raw', base, oracle]);
      // Created as qemu-img creates files (0666 less the umask), not as CDI's 0660 disk.img.
      assert.equal(statSync(out).mode & 0o777, statSync(oracle).mode & 0o777);
      assert.ok(dataBytes(out) <= dataBytes(oracle), `${dataBytes(out)} data bytes > qemu-img's ${dataBytes(oracle)}`);
      assert.ok(dataBytes(out) < statSync(out).size, 'the output has holes');
    });
  }
});

describe('stdin', () => {
  for (const name of ['disk.raw', 'disk.raw.xz', 'disk.raw.zst', 'disk.raw.gz']) {
    test(`${name} piped to "import -"`, async () => {
      const out = dir.join(`stdin-${name}.img`);
      const result = await runCli(['import', '-', '-o', out], { input: createReadStream(dir.join(name)) });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
    });
  }
});

test('a redirected file the caller already read from: the image is the rest of it, no longer (as `tail -c +N | …`)', async () => {
  const out = dir.join('stdin-rest.raw');
  const cli = [process.execPath, ...cliCommand].map((word) => `'${word}'`).join(' ');
  sh(`(dd bs=4096 count=1 of=/dev/null status=none; ${cli} convert - '${out}' -q) < '${raw}'`);
  const rest = dir.join('stdin-rest.reference');
  writeFileSync(rest, readFileSync(raw).subarray(4096));
  assert.equal(await sha256File(out), await qemuRawSha256(rest, dir.path));
});

describe('resize (SPEC §7)', () => {
  const usable = (requested: number, overhead: number) => Math.floor(Math.ceil(requested / (1 + overhead)) / MiB) * MiB;

  test('without --size the image keeps its virtual size', async () => {
    const out = dir.join('nosize.img');
    const result = await runCli(['import', dir.join('disk.raw.xz'), '-o', out]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(statSync(out).size, qemuVirtualSize(raw));
  });

  for (const [size, overhead] of [['64Mi', undefined], ['100M', '0'], ['50Mi', '0.1']] as const) {
    test(`--size ${size} --filesystem-overhead ${overhead ?? 'default'} grows to the usable size`, async () => {
      const out = dir.join(`grown-${size}.img`);
      const args = ['import', dir.join('disk.raw.gz'), '-o', out, '--size', size];
      if (overhead) args.push('--filesystem-overhead', overhead);
      const result = await runCli(args);
      assert.equal(result.code, 0, result.stderr);
      const requested = size.endsWith('Mi') ? Number(size.slice(0, -2)) * MiB : Number(size.slice(0, -1)) * 1e6;
      const expectedSize = usable(requested, overhead ? Number(overhead) : 0.06);
      assert.equal(statSync(out).size, expectedSize);
      assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path, expectedSize));
      // Less than --size asked for: the summary says why.
      const percent = overhead ? Number(overhead) * 100 : 6;
      const why = percent > 0 ? `less the ${percent} % --filesystem-overhead` : 'rounded down to whole MiB';
      // (A size that is not whole MiB is quoted in bytes: "954 MiB rounded down" to 953 MiB would read wrong.)
      const asked = requested % MiB === 0 ? '[\\d.]+ MiB' : `${requested} bytes`;
      if (expectedSize < requested) assert.match(result.stderr, new RegExp(`grown to [\\d.]+ MiB \\(--size ${asked} ${why}\\)`));
      else assert.doesNotMatch(result.stderr, /--size/);
    });
  }

  test('a requested size smaller than the image fails before writing, with the CDI phrase', async () => {
    const out = dir.join('toosmall.img');
    const result = await runCli(['import', raw, '-o', out, '--size', '4Mi']);
    assert.equal(result.code, 1);
    // --size is the limit, not free space: the size that fits is said, and it does fit.
    const hint = /virtual image size \d+ is larger than the reported available storage \d+: give a --size of at least (\d+Mi) for this 9\.0 MiB image \(--filesystem-overhead keeps 6 % of it free\), or (\d+Mi) with --filesystem-overhead 0$/.exec(result.stderr.trim());
    assert.ok(hint, result.stderr);
    assert.equal(result.stderr.trim().split('\n').length, 1);
    assert.equal(existsSync(out), false);
    assert.deepEqual(leftovers(), []);
    const fits = await runCli(['import', raw, '-o', out, '--size', hint[1]!, '-q']);
    assert.equal(fits.code, 0, fits.stderr);
    const smaller = await runCli(['import', raw, '-o', dir.join('toosmall2.img'), '--size', `${parseInt(hint[1]!, 10) - 1}Mi`, '-q']);
    assert.equal(smaller.code, 1, 'the size said is the smallest that fits');
    rmSync(out);
    // The other way out: that size with nothing kept free.
    const without = await runCli(['import', raw, '-o', out, '--size', hint[2]!, '--filesystem-overhead', '0', '-q']);
    assert.equal(without.code, 0, without.stderr);
    rmSync(out);
    // A --size that fits once nothing is kept free is told just that.
    const near = await runCli(['import', raw, '-o', out, '--size', hint[2]!]);
    assert.equal(near.code, 1);
    assert.match(near.stderr.trim(), /\(--filesystem-overhead keeps 6 % of it free\), or --filesystem-overhead 0$/);
  });

  test('a compressed image whose size shows only while streaming fails as it crosses the limit', async () => {
    // zstd (like gzip) does not say its size up front; an .xz index does (test/formats/xz-size.test.ts).
    const out = dir.join('toosmall-zst.img');
    const result = await runCli(['import', dir.join('disk.raw.zst'), '-o', out, '--size', '4Mi']);
    assert.equal(result.code, 1);
    // The size is not known yet, only that it passes the space: no partial count posing as the size.
    assert.match(result.stderr, /virtual image size of more than (\d+) bytes \(measured as the stream is read\) is larger than the reported available storage \1/);
    // --size was the limit, not the free space: the line says to give a larger one.
    assert.match(result.stderr, /: give a larger --size: the image needs more than the 3\.0 MiB this one leaves it \(its size shows only as it is decoded; `cdi-importer info --scan` measures it\)$/m);
    assert.equal(existsSync(out), false);
    assert.deepEqual(leftovers(), []);
  });
});

test('--preallocation allocates the whole file and says so', async () => {
  const out = dir.join('prealloc.img');
  const result = await runCli(['import', dir.join('disk.raw.zst'), '-o', out, '--size', '32Mi', '--preallocation', '--json']);
  assert.equal(result.code, 0, result.stderr);
  const json = JSON.parse(result.stdout);
  assert.equal(json.preallocationApplied, true);
  const size = statSync(out).size;
  assert.ok(allocatedBytes(out) >= size, `allocated ${allocatedBytes(out)} < size ${size}`);
  assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path, size));
});

describe('--checksum over the source bytes', () => {
  const digest = (file: string, algorithm: string) =>
    new Promise<string>((resolve, reject) => {
      const hash = createHash(algorithm);
      createReadStream(file).on('data', (d) => hash.update(d)).on('end', () => resolve(hash.digest('hex'))).on('error', reject);
    });

  for (const algorithm of ['md5', 'sha1', 'sha256', 'sha512']) {
    test(`good ${algorithm} of the compressed file`, async () => {
      const source = dir.join('disk.raw.xz');
      const out = dir.join(`sum-${algorithm}.img`);
      const expected = run(`${algorithm}sum`, [source]).split(' ')[0]!;
      const result = await runCli(['import', source, '-o', out, '--checksum', `${algorithm.toUpperCase()}:${expected}`]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
    });
  }

  test('a mismatch fails, names both digests and leaves no output', async () => {
    const source = dir.join('disk.raw.gz');
    const out = dir.join('badsum.img');
    const actual = await digest(source, 'sha256');
    const wrong = actual.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const result = await runCli(['import', source, '-o', out, '--checksum', `sha256:${wrong}`]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`checksum mismatch: expected sha256:${wrong}, calculated sha256:${actual}; the checksum covers the source as fetched \\(before any decompression\\)`));
    assert.equal(existsSync(out), false);
    assert.deepEqual(leftovers(), []);
  });

  test('a malformed checksum is a usage error (exit 2)', async () => {
    const result = await runCli(['import', raw, '-o', dir.join('x.img'), '--checksum', 'crc32:abcd']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /invalid checksum "crc32:abcd": expected ALGORITHM:HEX with ALGORITHM one of md5, sha1, sha256, sha512$/m);
    // A known algorithm with digits that are not hex: the digits are what is wrong.
    const notHex = await runCli(['import', raw, '-o', dir.join('x.img'), '--checksum', `sha256:${'g'.repeat(64)}`]);
    assert.equal(notHex.code, 2);
    assert.match(notHex.stderr, /invalid checksum "sha256:g+": the sha256 digest must be hex digits \(0-9, a-f\), not "g"$/m);
  });
});

test('an existing destination is replaced only when the import succeeds', async () => {
  const out = dir.join('keep.img');
  writeFileSync(out, 'previous contents');
  const bad = await runCli(['import', dir.join('disk.raw'), '-o', out, '--size', '1Mi']);
  assert.equal(bad.code, 1);
  assert.equal(String(readFileText(out)), 'previous contents');
  const good = await runCli(['import', dir.join('disk.raw'), '-o', out]);
  assert.equal(good.code, 0, good.stderr);
  assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
});

test('convert over an existing file whose final rename fails: the old disk is back at its path', async () => {
  const out = dir.join('kept-on-rename-failure.img');
  writeFileSync(out, 'previous contents');
  // One pool thread, so its second rename is the new disk's (the first moves the old one aside).
  const result = await runCli(['convert', dir.join('disk.raw'), out], {
    env: { UV_THREADPOOL_SIZE: '1' },
    wrap: ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=rename', '-e', 'inject=rename:error=EIO:when=2'],
  });
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /^cdi-importer: error: cannot write .*kept-on-rename-failure\.img: input\/output error/);
  assert.equal(String(readFileText(out)), 'previous contents');
  assert.deepEqual(readdirSync(dir.path).filter((name) => name.includes('kept-on-rename-failure') && name !== 'kept-on-rename-failure.img'), []);
});

test("import: a failed fsync of the destination's directory (the rename's durability) fails the import instead of passing as done", async () => {
  const out = dir.join('dir-fsync.img');
  // One pool thread: its first fsync is the file's, the second the directory's.
  const result = await runCli(['import', dir.join('disk.raw'), '-o', out, '-q'], {
    env: { UV_THREADPOOL_SIZE: '1' },
    wrap: ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO:when=2'],
  });
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stderr, `cdi-importer: error: cannot write ${out}: input/output error (EIO)\n`);
});

test('import into a directory the user may write but not read (0333: it cannot be opened to be synced): the import stands', async () => {
  const writeOnly = dir.join('write-only');
  mkdirSync(writeOnly);
  const out = path.join(writeOnly, 'disk.img');
  // As a non-root user would find it: opening the directory itself is refused (root is never refused).
  const result = await runCli(['import', dir.join('disk.raw'), '-o', out, '-q'], {
    wrap: ['strace', '-f', '-qq', '-o', '/dev/null', '-P', writeOnly, '-e', 'trace=openat', '-e', 'inject=openat:error=EACCES'],
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
});

test('convert replaces an existing larger output by one rename: the path never goes missing (no unlink first)', async () => {
  const out = dir.join('replaced.img');
  run('qemu-img', ['create', '-q', '-f', 'raw', out, '64M']);
  writeFileSync(out, Buffer.alloc(4 * MiB, 0xaa), { flag: 'r+' });
  // The system calls that remove or replace names: a kill between an unlink of the old file and
  // the rename would leave neither disk at the path.
  const trace = dir.join('replace.strace');
  const result = await runCli(['convert', dir.join('disk.raw'), out], {
    wrap: ['strace', '-f', '-qq', '-o', trace, '-e', 'trace=unlink,unlinkat,rename,renameat,renameat2'],
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
  assert.deepEqual(leftovers(), []);
  const calls = readFileSync(trace, 'utf8');
  assert.match(calls, /rename\w*\(.*"[^"]*\.replaced\.img\.partial-[0-9a-f]+".*"[^"]*replaced\.img"/, calls);
  assert.doesNotMatch(calls, /unlink\w*\(.*"[^"]*\/replaced\.img"/, calls);
});

test('import --no-fsync writes the same disk and replaces an existing one', async () => {
  const out = dir.join('nofsync.img');
  writeFileSync(out, 'previous contents');
  const result = await runCli(['import', `${raw}.xz`, '-o', out, '--no-fsync', '--filesystem-overhead', '0']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
  assert.deepEqual(leftovers(), []);
});

test("each command's default fsync choice is taken when said: import --fsync syncs, convert --no-fsync does not", async () => {
  for (const [command, syncs] of [[['import', '--fsync'], true], [['convert', '--no-fsync'], false]] as const) {
    const out = dir.join(`said-${command[0]}.img`);
    const trace = dir.join(`said-${command[0]}.strace`);
    const result = await runCli([...command, raw, out, '-q'], { wrap: ['strace', '-f', '-qq', '-o', trace, '-e', 'trace=fsync,fdatasync'] });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
    assert.equal(/\b(fsync|fdatasync)\(/.test(readFileSync(trace, 'utf8')), syncs, command.join(' '));
  }
});

test('temporary files of killed imports to the same destination are removed by the next successful one; a running import\'s stays', async () => {
  const tidy = dir.join('tidy');
  mkdirSync(tidy);
  const out = path.join(tidy, 'disk.img');
  const stalePartial = path.join(tidy, '.disk.img.partial-deadbeef');
  const staleOld = path.join(tidy, '.disk.img.old-cafebabe');
  const running = path.join(tidy, '.disk.img.partial-0badf00d');
  const unrelated = path.join(tidy, '.other.img.partial-12345678');
  // Named like ours but not ours: a user's backup, a link, a named pipe (an open would wait on it).
  const lookalikes = ['.disk.img.old-backup', '.disk.img.partial-notes.txt'];
  for (const file of [stalePartial, staleOld, running, unrelated, ...lookalikes.map((name) => path.join(tidy, name))]) writeFileSync(file, 'left over');
  symlinkSync(stalePartial, path.join(tidy, '.disk.img.old-0000000a'));
  spawnSync('mkfifo', [path.join(tidy, '.disk.img.partial-0000000b')]);
  // Not written to for over a minute, as a dead import's files are (a younger one may be an import starting).
  const minutesAgo = new Date(Date.now() - 120_000);
  for (const name of readdirSync(tidy)) if (statSync(path.join(tidy, name)).isFile()) utimesSync(path.join(tidy, name), minutesAgo, minutesAgo);
  const starting = path.join(tidy, '.disk.img.partial-0000000c');
  writeFileSync(starting, 'just opened, not locked yet');
  // Another import, still running, holds its partial file locked (flock, as ours do).
  const holder = spawn('flock', ['-x', running, 'sleep', '60'], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && spawnSync('flock', ['-n', '-x', running, 'true']).status === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    const result = await runCli(['convert', raw, out, '-q']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(readdirSync(tidy).sort(), [
      '.disk.img.old-0000000a',
      '.disk.img.old-backup',
      '.disk.img.partial-0000000b',
      '.disk.img.partial-0000000c',
      '.disk.img.partial-0badf00d',
      '.disk.img.partial-notes.txt',
      '.other.img.partial-12345678',
      'disk.img',
    ]);
  } finally {
    holder.kill();
  }
});

test('a destination name near the file system\'s 255-byte limit: its longer temporary name is cut to fit, as qemu-img writes such a name', async () => {
  const long = dir.join('long');
  mkdirSync(long);
  // 254 bytes (a 2-byte character across the cut) and 255: the names the file system takes.
  for (const name of [`${'é'.repeat(100)}${'d'.repeat(50)}.img`, `${'d'.repeat(251)}.img`]) {
    const out = path.join(long, name);
    for (const command of [['convert'], ['import', '--no-fsync']]) {
      // The second writes over the first's output: the old disk is set aside under a temporary name too.
      const result = await runCli([...command, raw, out, '-q']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
    }
    assert.deepEqual(readdirSync(long), [name], 'the temporary name was used and is gone');
    rmSync(out);
  }
});

function readFileText(file: string): string {
  return run('cat', [file]);
}

function qemuVirtualSize(file: string): number {
  return JSON.parse(run('qemu-img', ['info', '--output=json', '-f', 'raw', file]))['virtual-size'];
}

test('--timeout that passes while a local qcow2 is being opened: one line, exit 1, nothing left; a huge one means no limit', async () => {
  const qcow2 = dir.join('timeout.qcow2');
  run('qemu-img', ['convert', '-O', 'qcow2', raw, qcow2]);
  const out = dir.join('timeout.img');
  for (let i = 0; i < 3; i++) {
    const result = await runCli(['import', qcow2, out, '--timeout', '0.001']);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr.trim(), 'cdi-importer: error: the import did not finish within 0.001 s (--timeout): give a longer --timeout, or none for no limit');
    assert.equal(existsSync(out), false);
    assert.deepEqual(leftovers(), []);
  }
  // Beyond what a Node timer holds (2^31 ms), which used to fire at once.
  const result = await runCli(['import', qcow2, out, '--timeout', '99999999', '--stall-timeout', '3000000']);
  assert.equal(result.code, 0, result.stderr);
  assert.doesNotMatch(result.stderr, /TimeoutOverflowWarning/);
  assert.equal(await sha256File(out), await qemuRawSha256(qcow2, dir.path));
});

test('a replaced output keeps its mode, as with qemu-img convert', async () => {
  const out = dir.join('keeps-mode.img');
  writeFileSync(out, 'old');
  sh(`chmod 600 ${out}`);
  const result = await runCli(['convert', raw, out]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(statSync(out).mode & 0o777, 0o600);
  assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
});

test('a replaced output keeps its owner when root replaces another user\'s file (sudo), as with qemu-img convert', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root');
  const out = dir.join('keeps-owner.img');
  writeFileSync(out, 'old');
  sh(`chown 65534:65534 ${out} && chmod 660 ${out}`);
  const result = await runCli(['convert', raw, out]);
  assert.equal(result.code, 0, result.stderr);
  const info = statSync(out);
  assert.deepEqual([info.uid, info.gid, info.mode & 0o777], [65534, 65534, 0o660], 'the owner can still read and write it');
  assert.equal(await sha256File(out), await qemuRawSha256(raw, dir.path));
});

test('a file the user may not write is not replaced, though the directory would allow it (as qemu-img, cp and > refuse)', async () => {
  // The file's own permission is what access(2) answers for the user; root passes it, so the answer a
  // user gets is injected (strace, on this path only): the test then runs wherever the clone lives,
  // which another uid might not be able to read.
  const out = dir.join('golden.img');
  writeFileSync(out, 'golden');
  const notWritable = ['strace', '-f', '-qq', '-o', '/dev/null', '-P', out, '-e', 'trace=access,faccessat,faccessat2', '-e', 'inject=access,faccessat,faccessat2:error=EACCES'];
  for (const command of [['convert'], ['import', '--no-fsync']]) {
    const result = await runCli([...command, raw, out], { wrap: notWritable });
    assert.equal(result.code, 1, result.stderr);
    assert.equal(
      result.stderr,
      `cdi-importer: error: ${out} is not writable (permission denied), so it is not replaced: make it writable (chmod u+w) to replace it, or give another file name\n`,
    );
    assert.equal(readFileSync(out, 'utf8'), 'golden');
    assert.deepEqual(readdirSync(dir.path).filter((name) => name.includes('golden')), ['golden.img']);
  }
  // A file root may write (any file, as with qemu-img) is replaced.
  const replaced = await runCli(['convert', raw, out]);
  assert.equal(replaced.code, 0, replaced.stderr);
});

test('a writable file in a directory that cannot take new files: the line says the directory is the problem', async (t) => {
  // An immutable directory refuses new entries even to root; the file in it stays writable.
  const locked = dir.join('locked-dir');
  mkdirSync(locked);
  const out = path.join(locked, 'disk.img');
  writeFileSync(out, 'old');
  if (spawnSync('chattr', ['+i', locked]).status !== 0) return t.skip('chattr +i is not permitted here');
  try {
    const result = await runCli(['convert', raw, out]);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(
      result.stderr.trim(),
      `cdi-importer: error: permission denied creating a file in ${locked}: the disk is written beside disk.img under a temporary name and renamed into place, so the directory must be writable too`,
    );
    assert.equal(readFileSync(out, 'utf8'), 'old', 'the file is untouched');
  } finally {
    spawnSync('chattr', ['-i', locked]);
  }
});

test('bytesWritten is what reached the file, the same for one disk as raw, raw.gz and qcow2 (holes not counted)', async () => {
  // Whole sectors: a qcow2 made from a raw of odd length holds the padded last sector.
  const disk = dir.join('written.raw');
  makeDiskLikeImage(disk, 6 * MiB);
  sh(`gzip -kf ${disk}`);
  const qcow2 = dir.join('written.qcow2');
  run('qemu-img', ['convert', '-O', 'qcow2', disk, qcow2]);
  const figures: number[] = [];
  for (const source of [disk, `${disk}.gz`, qcow2]) {
    const out = dir.join(`written-${figures.length}.img`);
    const result = await runCli(['convert', source, out, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const { bytesWritten } = JSON.parse(result.stdout) as { bytesWritten: number };
    // The data the file holds: its data extents (SEEK_DATA), at most rounded up to whole blocks.
    assert.ok(bytesWritten <= dataBytes(out) && dataBytes(out) - bytesWritten < 4096, `${source}: ${bytesWritten} against ${dataBytes(out)} data bytes`);
    assert.ok(bytesWritten < statSync(out).size, 'the disk has holes, which do not count');
    figures.push(bytesWritten);
  }
  assert.equal(new Set(figures).size, 1, `one figure for one disk: ${figures.join(', ')}`);
});

test('network flags given with a local source are said not to apply (they are still checked)', async () => {
  const out = dir.join('noted.img');
  const result = await runCli(['import', raw, '-o', out, '--header', 'X-Token: 1', '--insecure', '--stall-timeout', '5']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /^cdi-importer: note: --insecure, --header, --stall-timeout do not apply to a local source$/m);
  const bad = await runCli(['import', raw, '-o', dir.join('noted2.img'), '--header', 'NoColon']);
  assert.equal(bad.code, 2, bad.stderr);
  rmSync(out);
});
