/**
 * `convert` as CI pipelines use it (byte-identical to qemu-img convert -O raw) and the progress
 * display of `import`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, createReadStream, existsSync, openSync, readdirSync, statSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { cliCommand, repoRoot, runCli } from '../support/cli.js';
import { makeTempDir, qemuRawSha256, run, sh, sha256File, type TempDir } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { moveL2TableToEnd } from '../qcow2/patch.js';
import { attachLoop, detachLoop } from '../support/loop-device.js';

const MiB = 1 << 20;
let dir: TempDir;

before(() => {
  dir = makeTempDir();
  makeDiskLikeImage(dir.join('disk.raw'), 20 * MiB);
  run('qemu-img', ['convert', '-q', '-c', '-O', 'qcow2', dir.join('disk.raw'), dir.join('disk.qcow2')]);
  sh(`cd ${dir.path} && xz -T1 -kf disk.qcow2 && zstd -qf disk.qcow2 && gzip -kf disk.raw`);
  // pzstd writes a skippable frame before every frame: the file does not start with a frame's magic.
  sh(`cd ${dir.path} && pzstd -q -p 2 -c disk.qcow2 > disk.qcow2.pzst`);
});
after(() => dir.remove());

for (const name of ['disk.qcow2', 'disk.qcow2.xz', 'disk.qcow2.zst', 'disk.qcow2.pzst', 'disk.raw.gz']) {
  test(`convert ${name} equals qemu-img convert -O raw, with no resize`, async () => {
    const out = dir.join(`${name}.out`);
    const result = await runCli(['convert', dir.join(name), out]);
    assert.equal(result.code, 0, result.stderr);
    const oracle = name.startsWith('disk.qcow2') ? dir.join('disk.qcow2') : dir.join('disk.raw');
    assert.equal(await sha256File(out), await qemuRawSha256(oracle, dir.path));
  });
}

test('convert of a qcow2.xz that needs scratch uses the output\'s directory, and cleans up', async () => {
  const sub = dir.join('snap');
  run('mkdir', ['-p', sub]);
  const image = `${sub}/moved.qcow2`;
  // 4 KiB clusters, the first L2 table moved behind the data it maps (as qcow2 tests make them).
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', image, '12M']);
  run('qemu-io', ['-c', 'write -P 0x5a 0 2M', '-c', 'write -P 0x5b 6M 3M', image], { stdio: 'pipe' });
  moveL2TableToEnd(image, 0);
  sh(`xz -T1 -0 -kf ${image}`);
  const out = `${sub}/out.raw`;
  const result = await runCli(['convert', `${image}.xz`, out, '--json']);
  assert.equal(result.code, 0, result.stderr);
  assert.ok(JSON.parse(result.stdout).scratchBytesUsed > 0, 'this image needs scratch');
  assert.equal(await sha256File(out), await qemuRawSha256(image, dir.path));
  assert.deepEqual(readdirSync(sub).sort(), ['moved.qcow2', 'moved.qcow2.xz', 'out.raw'], 'no scratch file left');
  // import keeps CDI's explicit scratch space.
  const imported = await runCli(['import', `${image}.xz`, '-o', `${sub}/imported.img`]);
  assert.equal(imported.code, 1);
  assert.match(imported.stderr, /scratch space required: .*give a scratch directory \(--scratch DIR/);
});

test('convert from stdin', async () => {
  const out = dir.join('stdin.out');
  const result = await runCli(['convert', '-', out], { input: createReadStream(dir.join('disk.qcow2.xz')) });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(await sha256File(out), await qemuRawSha256(dir.join('disk.qcow2'), dir.path));
  assert.match(result.stderr, /^Converted xz → qcow2 \(20\.0 MiB\) to \S+stdin\.out in /m, 'convert says what it did');
});

test('convert refuses remote sources with a pointer to import', async () => {
  const result = await runCli(['convert', 'http://127.0.0.1:1/x.img', dir.join('x.out')]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /convert works on local files and stdin; use "cdi-importer import/);
});

test('--progress shows percentage, bytes, rate and ETA when the size is known', async () => {
  // A throttled pipe would make this slow; the final redraw at 100 % always happens.
  const result = await runCli(['import', dir.join('disk.raw.gz'), '-o', dir.join('progress.img'), '--progress']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /\r\[#+\] 100% [\d.]+ \w?i?B \/ [\d.]+ \w?i?B +[\d.]+ \w?i?B\/s +ETA \d+:\d\d/);
  assert.match(result.stderr, /Imported gzip → raw \(20\.0 MiB\)/);
});

test('--progress of a qcow2 read by random access ends at 100 %, and never starts with an ETA of hours', async () => {
  const result = await runCli(['import', dir.join('disk.qcow2'), '-o', dir.join('progress-ra.img'), '--progress']);
  assert.equal(result.code, 0, result.stderr);
  const frames = result.stderr.split('\r').filter((f) => f.includes('%'));
  assert.match(frames.at(-1)!, /\[#+\] 100% /, result.stderr);
  assert.ok(frames.every((f) => !/ETA \d+:\d\d:\d\d/.test(f)), result.stderr);
  assert.match(result.stderr, /Imported qcow2 \(20\.0 MiB\)/);
});

test('without a known size, progress shows bytes and rate', async () => {
  const result = await runCli(['import', '-', '-o', dir.join('progress2.img'), '--progress'], {
    input: createReadStream(dir.join('disk.raw.gz')),
  });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /\r[\d.]+ \w?i?B +[\d.]+ \w?i?B\/s/);
  assert.doesNotMatch(result.stderr, /ETA/);
});

test('--quiet prints nothing; --json prints one object', async () => {
  const quiet = await runCli(['import', dir.join('disk.raw.gz'), '-o', dir.join('q.img'), '--quiet']);
  assert.equal(quiet.code, 0);
  assert.equal(quiet.stderr, '');
  assert.equal(quiet.stdout, '');
  const json = await runCli(['import', dir.join('disk.qcow2.xz'), '-o', dir.join('j.img'), '--json', '--size', '64Mi']);
  assert.equal(json.code, 0, json.stderr);
  const result = JSON.parse(json.stdout);
  assert.deepEqual(result.formats, ['xz', 'qcow2']);
  assert.equal(result.virtualSize, 20 * MiB);
  assert.equal(result.targetSize, statSync(dir.join('j.img')).size);
  assert.equal(result.scratchBytesUsed, 0);
});

test('qemu-img convert\'s own flags: -f raw|qcow2 (a different image is refused before writing), -O raw, -p', async () => {
  const out = dir.join('flags.raw');
  const ok = await runCli(['convert', '-f', 'qcow2', '-O', 'raw', dir.join('disk.qcow2.xz'), out, '-q']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(await sha256File(out), await qemuRawSha256(dir.join('disk.qcow2'), dir.path));
  const raw = await runCli(['convert', '-f', 'raw', dir.join('disk.raw.gz'), dir.join('flags2.raw'), '-p']);
  assert.equal(raw.code, 0, raw.stderr);
  assert.match(raw.stderr, /100%/, 'progress shown with -p');
  for (const [args, message] of [
    [['-f', 'raw', dir.join('disk.qcow2')], /disk\.qcow2 is a qcow2 image, not raw \(-f raw\)/],
    [['-f', 'qcow2', dir.join('disk.raw.gz')], /disk\.raw\.gz is a raw image, not qcow2 \(-f qcow2\)/],
  ] as Array<[string[], RegExp]>) {
    const refused = await runCli(['convert', ...args, dir.join('refused.raw')]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, message);
    assert.deepEqual(readdirSync(dir.path).filter((n) => n.includes('refused.raw')), []);
  }
  const vmdk = await runCli(['convert', '-O', 'vmdk', dir.join('disk.qcow2'), dir.join('refused.vmdk')]);
  assert.equal(vmdk.code, 2);
  assert.match(vmdk.stderr, /convert writes raw only \(-O vmdk\)/);
  const badF = await runCli(['convert', '-f', 'vdi', dir.join('disk.qcow2'), dir.join('refused.raw')]);
  assert.equal(badF.code, 2);
  assert.match(badF.stderr, /invalid -f "vdi": expected raw or qcow2/);
});

test("qemu-img convert's tuning flags are accepted (-W, -m, -t, -T, -S 4k, -U); -S of another size is refused", async () => {
  const out = dir.join('tuned.raw');
  const ok = await runCli(['convert', '-U', '-W', '-m', '8', '-t', 'none', '-T', 'none', '-S', '4k', dir.join('disk.qcow2'), out, '-q']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(await sha256File(out), await qemuRawSha256(dir.join('disk.qcow2'), dir.path));
  const dense = await runCli(['convert', '-S', '0', dir.join('disk.qcow2'), dir.join('dense.raw')]);
  assert.equal(dense.code, 2);
  assert.match(dense.stderr, /-S 0 is not supported: convert always writes zero runs of 4 KiB or more as holes/);
  // Checked as qemu-img checks them, so a typo it would catch is caught here too.
  for (const [args, message] of [
    [['-m', '17'], /invalid -m 17: the number of coroutines is between 1 and 16/],
    [['-m', '0'], /invalid -m 0/],
    [['-t', 'bogus'], /invalid cache option -t bogus: expected none, writeback, unsafe, directsync or writethrough/],
    [['-T', 'bogus'], /invalid cache option -T bogus/],
  ] as Array<[string[], RegExp]>) {
    const refused = await runCli(['convert', ...args, dir.join('disk.qcow2'), dir.join('typo.raw')]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, message);
  }
});

test("qemu-img convert's -o preallocation is taken as qemu-img takes it: off sparse, falloc and full allocated, the bytes the same", async () => {
  const expected = await qemuRawSha256(dir.join('disk.qcow2'), dir.path);
  for (const mode of ['off', 'falloc', 'full']) {
    const out = dir.join(`prealloc-${mode}.raw`);
    const result = await runCli(['convert', '-O', 'raw', '-o', `preallocation=${mode}`, dir.join('disk.qcow2'), out, '-q']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(out), expected);
    run('qemu-img', ['convert', '-O', 'raw', '-o', `preallocation=${mode}`, dir.join('disk.qcow2'), `${out}.qemu`]);
    const allocated = (file: string) => statSync(file).blocks * 512;
    // As qemu-img's: the whole file allocated, or only what it wrote.
    assert.equal(allocated(out) >= statSync(out).size, allocated(`${out}.qemu`) >= statSync(`${out}.qemu`).size, `${mode}: ${allocated(out)} bytes allocated`);
  }
});

test('-o preallocation=falloc or full to a block device is refused, as qemu-img refuses it, and the device is left as it was', async (t) => {
  const backing = dir.join('prealloc-device.img');
  run('truncate', ['-s', '64M', backing]);
  const device = attachLoop(backing);
  if (!device) return t.skip('losetup is not permitted here');
  try {
    for (const mode of ['falloc', 'full']) {
      const qemu = spawnSync('qemu-img', ['convert', '-O', 'raw', '-o', `preallocation=${mode}`, dir.join('disk.qcow2'), device], { encoding: 'utf8' });
      assert.notEqual(qemu.status, 0, 'qemu-img refuses it');
      const result = await runCli(['convert', '-O', 'raw', '-o', `preallocation=${mode}`, dir.join('disk.qcow2'), device]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr.trim(), new RegExp(`^cdi-importer: error: -o preallocation=${mode} is not supported for a block device \\(qemu-img convert refuses it too\\)`));
    }
    assert.equal(statSync(backing).blocks, 0, 'nothing was written to the device');
  } finally {
    detachLoop(device);
  }
});

test("qemu-img convert's -n and other -o options are refused in words, saying what to do (usage, exit 2), and nothing is written", async () => {
  for (const [args, message] of [
    [['-n'], /^cdi-importer: error: -n is not supported: convert creates its output .*; leave -n out$/],
    [['-o', 'preallocation=off,nocow=on'], /^cdi-importer: error: -o nocow=on is not supported: convert writes a plain raw file and takes only -o preallocation=off, falloc or full; leave the option out, or use qemu-img convert for it$/],
    [['-o', 'preallocation=metadata'], /^cdi-importer: error: -o preallocation=metadata is not supported/],
    [['-o', ' '], /^cdi-importer: error: -o " " is not supported: convert writes a plain raw file/],
  ] as Array<[string[], RegExp]>) {
    const refused = await runCli(['convert', ...args, '-O', 'raw', dir.join('disk.qcow2'), dir.join('refused-n.raw')]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr.trim(), message);
    assert.equal(existsSync(dir.join('refused-n.raw')), false);
  }
});

test('"-" as the output is refused: a pipe reading it would get nothing, and a file named "-" would appear', async () => {
  for (const args of [['convert', dir.join('disk.qcow2'), '-'], ['import', dir.join('disk.qcow2'), '-o', '-']]) {
    const result = await runCli(args, { cwd: dir.path });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /writing the image to standard output is not supported: give an output file or block device/);
    assert.equal(existsSync(dir.join('-')), false);
  }
});

test('a reader of stdout that went away (--json | true) changes nothing: exit 0, no stack trace, the output complete', async () => {
  const out = dir.join('epipe.raw');
  const child = spawn(process.execPath, [...cliCommand, 'convert', dir.join('disk.qcow2'), out, '--json'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 0, stderr);
  assert.equal(stderr, '');
  assert.equal(await sha256File(out), await qemuRawSha256(dir.join('disk.qcow2'), dir.path));
});

test('a reader of stderr that went away (2> >(head -c 10)) changes nothing either: exit 0, the output complete, no .partial left', async () => {
  const out = dir.join('stderr-epipe.raw');
  // --progress writes to stderr all along; --json adds the report to stdout.
  const child = spawn(process.execPath, [...cliCommand, 'import', dir.join('disk.qcow2'), out, '--progress', '--no-fsync', '--json'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.destroy();
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 0, stdout);
  assert.equal((JSON.parse(stdout) as { ok: boolean }).ok, true);
  assert.equal(await sha256File(out), await qemuRawSha256(dir.join('disk.qcow2'), dir.path));
  assert.deepEqual(readdirSync(dir.path).filter((name) => name.includes('.partial-')), []);
});

test('a report that cannot be written (stdout on a full disk) is one line on stderr and exit 1, not a stack trace', async () => {
  const full = openSync('/dev/full', 'w');
  const child = spawn(process.execPath, [...cliCommand, 'convert', dir.join('disk.qcow2'), dir.join('full.raw'), '--json'], { cwd: repoRoot, stdio: ['ignore', full, 'pipe'] });
  closeSync(full);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 1, stderr);
  assert.equal(stderr.trim(), 'cdi-importer: error: cannot write to standard output: no space left on the device (ENOSPC)');
});
