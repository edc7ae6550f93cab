/**
 * Bad input and bad destinations: one clear line, exit 1 (2 for usage), and nothing left behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { existsSync, readdirSync, writeFileSync, readFileSync, statSync, mkdirSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { cliCommand, repoRoot, runCli } from '../support/cli.js';
import { createLuks, qemuImg, qemuIo, xzCompress } from '../qcow2/images.js';
import { moveL2TableToEnd } from '../qcow2/patch.js';
import { escapeRegExp, makeTempDir, qemuRawSha256, run, sh, sha256File, type TempDir } from '../support/tools.js';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { mountTmpfs } from '../support/loop-device.js';

const MiB = 1 << 20;
let dir: TempDir;
let raw: string;

before(() => {
  dir = makeTempDir();
  raw = dir.join('disk.raw');
  makeDiskLikeImage(raw, 6 * MiB);
  sh(`cd ${dir.path} && gzip -kf disk.raw && xz -kf -T1 disk.raw && zstd -qf disk.raw`);
});
after(() => dir.remove());

/** Files in `dir.path` whose names start with `prefix` (the output and any temporary sibling). */
function outputsNamed(prefix: string): string[] {
  return readdirSync(dir.path).filter((name) => name.startsWith(prefix) || name.startsWith(`.${prefix}`));
}

async function expectFailure(args: string[], pattern: RegExp, outName: string, input?: Buffer) {
  const result = await runCli(args, { input });
  assert.equal(result.code, 1, `exit ${result.code}: ${result.stderr}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /at .*\.ts:\d+/, 'no stack trace');
  assert.deepEqual(outputsNamed(outName), [], 'nothing left behind');
}

describe('bad input', () => {
  test('empty file', async () => {
    writeFileSync(dir.join('empty.raw'), '');
    await expectFailure(['import', dir.join('empty.raw'), '-o', dir.join('o-empty.img')], /empty.raw is empty/, 'o-empty');
  });

  test('an HTML page (a login page saved, or served with a 200) is not a disk, compressed or not', async () => {
    writeFileSync(dir.join('login.html'), '\n  <!DOCTYPE html>\n<html><body><form>Sign in</form></body></html>\n');
    await expectFailure(['import', dir.join('login.html'), '-o', dir.join('o-html.img')], /login\.html is an HTML page, not a disk image \(a saved web page instead of the download\?\)$/, 'o-html');
    sh(`gzip -kf ${dir.join('login.html')}`);
    await expectFailure(['import', dir.join('login.html.gz'), '-o', dir.join('o-htmlgz.img')], /is an HTML page, not a disk image/, 'o-htmlgz');
  });

  test('an empty archive source says there is no archive to extract', async () => {
    writeFileSync(dir.join('empty.tar'), '');
    mkdirSync(dir.join('o-empty-tree'), { recursive: true });
    const result = await runCli(['import', dir.join('empty.tar'), '--content-type', 'archive', '-o', dir.join('o-empty-tree')]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /empty\.tar is empty: there is no archive to extract$/m);
    assert.deepEqual(readdirSync(dir.join('o-empty-tree')), []);
  });

  test('empty stdin', async () => {
    await expectFailure(['import', '-', '-o', dir.join('o-stdin.img')], /standard input is empty/, 'o-stdin', Buffer.alloc(0));
  });

  test('empty gzip stream', async () => {
    sh(`gzip -c < /dev/null > ${dir.join('empty.gz')}`);
    await expectFailure(['import', dir.join('empty.gz'), '-o', dir.join('o-emptygz.img')], /empty after gzip/, 'o-emptygz');
  });

  test('truncated gzip', async () => {
    const file = dir.join('trunc.raw.gz');
    const whole = readFileSync(dir.join('disk.raw.gz'));
    writeFileSync(file, whole.subarray(0, Math.floor(whole.length * 0.6)));
    await expectFailure(['import', file, '-o', dir.join('o-truncgz.img')], /gzip data is corrupt or truncated/, 'o-truncgz');
  });

  test('a small truncated gzip (the error arrives before the reader starts)', async () => {
    const file = dir.join('small-trunc.gz');
    sh(`head -c 200000 ${raw} | gzip -c > ${file}.full && head -c 150000 ${file}.full > ${file}`);
    await expectFailure(['import', file, '-o', dir.join('o-smalltrunc.img')], /gzip data is corrupt or truncated/, 'o-smalltrunc');
  });

  test('gzip followed by trailing garbage: said so, not "corrupt" (gzip -dc only warns; CDI refuses too)', async () => {
    const file = dir.join('trailing.raw.gz');
    writeFileSync(file, Buffer.concat([readFileSync(dir.join('disk.raw.gz')), Buffer.from('appended by mistake\n')]));
    await expectFailure(['import', file, '-o', dir.join('o-trailgz.img')], /trailing\.raw\.gz: bytes that are not gzip follow the gzip data \(trailing garbage\)/, 'o-trailgz');
  });

  test('gzip with zero bytes and then more (a member, or garbage) after it: trailing garbage, from a file and from stdin; zeros alone are padding', async () => {
    // Found by a QA pass: zlib stops at a zero byte after a member and dropped the rest, so a
    // second member after padding came out as a shorter disk, exit 0.
    const gz = readFileSync(dir.join('disk.raw.gz'));
    const member = gzipSync(Buffer.alloc(4096, 7));
    const incompressible = gzipSync(randomBytes(3 << 20));
    const cases: [string, Buffer][] = [
      ['member', Buffer.concat([gz, Buffer.alloc(4), member])],
      ['garbage', Buffer.concat([gz, Buffer.from('\0garbage')])],
      ['far-garbage', Buffer.concat([gz, Buffer.alloc(300_000), Buffer.from('x')])],
      // The next member (of data that does not compress) starting on a read's boundary made zlib
      // fail with "stream.push() after EOF".
      ['aligned-member', Buffer.concat([incompressible, Buffer.alloc((1 << 20) - (incompressible.length % (1 << 20))), gzipSync(randomBytes(1 << 20))])],
    ];
    for (const [name, bytes] of cases) {
      writeFileSync(dir.join(`zero-then-${name}.gz`), bytes);
      await expectFailure(['import', dir.join(`zero-then-${name}.gz`), '-o', dir.join(`o-zt-${name}.img`)], /bytes that are not gzip follow the gzip data \(trailing garbage\)/, `o-zt-${name}`);
      await expectFailure(['import', '-', '-o', dir.join(`o-zt-${name}.img`)], /^cdi-importer: error: standard input: bytes that are not gzip follow/, `o-zt-${name}`, bytes);
    }
    writeFileSync(dir.join('padded.gz'), Buffer.concat([gz, Buffer.alloc(300_000)]));
    const padded = await runCli(['import', dir.join('padded.gz'), '-o', dir.join('o-padded.img'), '--quiet']);
    assert.equal(padded.code, 0, padded.stderr);
    assert.equal(await sha256File(dir.join('o-padded.img')), await qemuRawSha256(raw, dir.path));
  });

  test('truncated xz', async () => {
    const file = dir.join('trunc.raw.xz');
    const whole = readFileSync(dir.join('disk.raw.xz'));
    writeFileSync(file, whole.subarray(0, Math.floor(whole.length * 0.6)));
    await expectFailure(['import', file, '-o', dir.join('o-truncxz.img')], /xz data is corrupt or truncated/, 'o-truncxz');
  });

  test('corrupt xz', async () => {
    const file = dir.join('corrupt.raw.xz');
    const data = Buffer.from(readFileSync(dir.join('disk.raw.xz')));
    for (let i = 4096; i < 8192; i++) data[i] = data[i]! ^ 0x55;
    writeFileSync(file, data);
    await expectFailure(['import', file, '-o', dir.join('o-corruptxz.img')], /xz data is corrupt or truncated/, 'o-corruptxz');
  });

  test('corrupt zstd', async () => {
    const file = dir.join('corrupt.raw.zst');
    const data = Buffer.from(readFileSync(dir.join('disk.raw.zst')));
    for (let i = 100; i < 4000; i++) data[i] = data[i]! ^ 0xa5;
    writeFileSync(file, data);
    await expectFailure(['import', file, '-o', dir.join('o-corruptzst.img')], /zstd data is corrupt or truncated/, 'o-corruptzst');
  });

  test('zstd made with a dictionary, or with a window over 128 MiB: said so and what to do, not "corrupt" (found by a QA pass)', async () => {
    const samples = dir.join('zstd-samples');
    mkdirSync(samples, { recursive: true });
    for (let i = 1; i <= 40; i++) writeFileSync(path.join(samples, `s${i}.txt`), Array.from({ length: 300 }, (_, n) => `line ${i} value ${n * 3 + i}\n`).join(''));
    sh(`cd ${dir.path} && zstd -q -f --train zstd-samples/* -o zstd.dict --maxdict=16384 && zstd -q -f -D zstd.dict disk.raw -o dict.raw.zst`);
    await expectFailure(
      ['import', dir.join('dict.raw.zst'), '-o', dir.join('o-dictzst.img')],
      /dict\.raw\.zst: the zstd data was compressed with a dictionary \(zstd -D\), which is not supported: decompress it with its dictionary \(zstd -d -D DICT\) and import the result$/,
      'o-dictzst',
    );
    // From a pipe: with the size known, zstd shrinks the window to the input.
    sh(`cd ${dir.path} && cat disk.raw | zstd -q -f --long=28 -o long.raw.zst`);
    await expectFailure(
      ['import', dir.join('long.raw.zst'), '-o', dir.join('o-longzst.img')],
      /long\.raw\.zst: the zstd data needs more memory to decode than the decoder allows \(.*\): recompress it with a window of 128 MiB or less \(zstd --long=27 or less, or without --long\)$/,
      'o-longzst',
    );
  });

  test('truncated zstd', async () => {
    const file = dir.join('trunc.raw.zst');
    const whole = readFileSync(dir.join('disk.raw.zst'));
    writeFileSync(file, whole.subarray(0, Math.floor(whole.length * 0.6)));
    await expectFailure(['import', file, '-o', dir.join('o-trunczst.img')], /zstd data is corrupt or truncated/, 'o-trunczst');
  });

  test('a damaged image is named in the line: the file (random access or one pass) or standard input', async () => {
    const whole = dir.join('named.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', whole, '16M');
    qemuIo(whole, 'write -P 7 0 2M');
    const file = dir.join('named-trunc.qcow2');
    writeFileSync(file, readFileSync(whole).subarray(0, 300_000));
    xzCompress(file);
    const damage = /qcow2 L\d? ?.*(past|beyond) the end of the 300000-byte (file|image)/;
    const named = (where: string) => new RegExp(`^cdi-importer: error: ${escapeRegExp(where)}: ${damage.source}`);
    await expectFailure(['import', file, '-o', dir.join('o-named.img')], named(file), 'o-named');
    await expectFailure(['convert', `${file}.xz`, dir.join('o-named.raw')], named(`${file}.xz`), 'o-named');
    await expectFailure(['import', '-', '-o', dir.join('o-named.img')], named('standard input'), 'o-named', readFileSync(`${file}.xz`));
    // --json carries the same line.
    const json = await runCli(['convert', file, dir.join('o-named.raw'), '--json']);
    assert.match(JSON.parse(json.stdout).error, new RegExp(`^${named(file).source.slice('^cdi-importer: error: '.length)}`));
  });

  test('the source is named even when its name is a word of the line, or of the backing file the image names', async () => {
    const work = dir.join('short-names');
    mkdirSync(path.join(work, 'vm'), { recursive: true });
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/passwd', '-F', 'raw', path.join(work, 'image'), '1M');
    // An overlay named as its base, one directory up: the name stands inside the backing file's.
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', '../disk.qcow2', '-F', 'qcow2', path.join(work, 'vm', 'disk.qcow2'), '1M');
    for (const [source, cwd] of [['image', work], ['disk.qcow2', path.join(work, 'vm')]] as const) {
      const result = await runCli(['import', source, '-o', dir.join('o-short.img')], { cwd });
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`^cdi-importer: error: ${escapeRegExp(source)}: qcow2 image has a backing file`));
    }
  });

  test('a source whose name holds a newline or an escape sequence: one line, nothing a terminal acts on', async () => {
    const newline = dir.join('bad\nname.qcow2');
    const escape = dir.join('esc\x1b[31mred.qcow2');
    for (const file of [newline, escape]) writeFileSync(file, readFileSync(dir.join('named-trunc.qcow2')));
    for (const [file, shown] of [[newline, 'bad name.qcow2'], [escape, 'esc\\u001b[31mred.qcow2']] as const) {
      const result = await runCli(['import', file, '-o', dir.join('o-odd.img'), '--json']);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
      assert.doesNotMatch(result.stderr, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, 'no raw control characters');
      const line = result.stderr.trim().slice('cdi-importer: error: '.length);
      assert.ok(line.startsWith(`${path.dirname(file)}/${shown}: qcow2 `), line);
      assert.equal(line.split(shown).length, 2, `named once: ${line}`);
      assert.equal(JSON.parse(result.stdout).error, line);
    }
  });

  test('LZMA-alone (.lzma, xz --format=lzma) is refused by name, not imported as a raw disk of compressed bytes', async () => {
    for (const level of ['-1', '-6', '-9', '--lzma1=preset=1,lc=0,lp=0,pb=0']) {
      const file = dir.join(`disk${level.replace(/[^a-z0-9-]/gi, '')}.lzma`);
      sh(`xz --format=lzma ${level} -c ${raw} > ${file}`);
      await expectFailure(['import', file, '-o', dir.join('o-lzma.img')], /is LZMA-alone \(\.lzma\) data, which is not supported: recompress it as xz/, 'o-lzma');
    }
    // A raw disk (its boot sector, or zeros) is still raw, also one whose first bytes happen to
    // read as lc/lp/pb 0 and a 4 KiB dictionary.
    const result = await runCli(['info', raw, '--json']);
    assert.equal(JSON.parse(result.stdout).format, 'raw');
    const lookalike = dir.join('lzma-lookalike.raw');
    writeFileSync(lookalike, Buffer.concat([Buffer.from([0, 0, 0x10, 0, 0]), Buffer.alloc(1 << 20)]));
    assert.equal(JSON.parse((await runCli(['info', lookalike, '--json'])).stdout).format, 'raw');
  });

  test('bzip2 is refused by name, as a disk image and as an archive (it read as "found raw")', async () => {
    sh(`bzip2 -c ${raw} > ${dir.join('disk.raw.bz2')} && tar -cf ${dir.join('a.tar')} -C ${dir.path} disk.raw && bzip2 -kf ${dir.join('a.tar')}`);
    await expectFailure(['import', dir.join('disk.raw.bz2'), '-o', dir.join('o-bz2.img')], /disk\.raw\.bz2 is bzip2-compressed, which is not supported \(nor by CDI\): recompress it as xz/, 'o-bz2');
    mkdirSync(dir.join('bz2-out'));
    const archive = await runCli(['import', '--content-type', 'archive', dir.join('a.tar.bz2'), '-o', dir.join('bz2-out')]);
    assert.equal(archive.code, 1);
    assert.match(archive.stderr, /a\.tar\.bz2 is bzip2-compressed, which is not supported \(nor by CDI\)/);
    const lzma = dir.join('a.tar.lzma');
    sh(`xz --format=lzma -c ${dir.join('a.tar')} > ${lzma}`);
    const lzmaArchive = await runCli(['import', '--content-type', 'archive', lzma, '-o', dir.join('bz2-out')]);
    assert.match(lzmaArchive.stderr, /a\.tar\.lzma is LZMA-alone \(\.lzma\) data, which is not supported/);
    assert.equal(JSON.parse((await runCli(['info', dir.join('disk.raw.bz2'), '--json'])).stdout).format, 'bzip2');
  });

  test("info --json says why import refuses bzip2, .lzma, LZ4 and a web page, in import's words (found by a QA pass: only the text said so; LZ4 imported as a raw disk)", async () => {
    sh(`bzip2 -c ${raw} > ${dir.join('r.bz2')} && xz --format=lzma -c ${raw} > ${dir.join('r.lzma')} && zstd -q --format=lz4 -c ${raw} > ${dir.join('r.lz4')}`);
    writeFileSync(dir.join('page.img'), '<!DOCTYPE html><html><body>Sign in</body></html>\n');
    for (const name of ['r.bz2', 'r.lzma', 'r.lz4', 'page.img']) {
      const file = dir.join(name);
      const refused = await runCli(['import', file, '-o', dir.join(`o-${name}`)]);
      assert.equal(refused.code, 1, refused.stderr);
      const info = await runCli(['info', file, '--json']);
      assert.equal(info.code, 0, info.stderr);
      assert.equal(`cdi-importer: error: ${JSON.parse(info.stdout)['import-refused']}`, refused.stderr.trim(), name);
    }
    // -f raw takes bytes that only look like these as the raw disk they are, as qemu-img -f raw does (found by a QA pass).
    const lookalike = dir.join('lz4-lookalike.raw');
    writeFileSync(lookalike, Buffer.concat([Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x40]), readFileSync(raw).subarray(5)]));
    const taken = await runCli(['import', lookalike, '-f', 'raw', '-o', dir.join('o-lookalike.img'), '--quiet']);
    assert.equal(taken.code, 0, taken.stderr);
    assert.equal(await sha256File(dir.join('o-lookalike.img')), await qemuRawSha256(lookalike, dir.path));
    assert.match(
      (await runCli(['import', dir.join('r.lz4'), '-o', dir.join('o-lz4.img')])).stderr,
      /r\.lz4 is LZ4-compressed, which is not supported \(nor by CDI\): recompress it as zstd \(lz4 -dc FILE \| zstd > FILE\.zst\), xz or gzip first$/m,
    );
  });

  test('gzip inside gzip is refused', async () => {
    sh(`gzip -c ${dir.join('disk.raw.gz')} > ${dir.join('double.gz')}`);
    await expectFailure(['import', dir.join('double.gz'), '-o', dir.join('o-double.img')], /gzip data inside gzip data is not supported/, 'o-double');
  });

  const names: Record<string, string> = { vmdk: 'VMDK', vdi: 'VDI', vhdx: 'VHDX', vpc: 'VHD', qed: 'QED', parallels: 'Parallels' };
  for (const [format, name] of Object.entries(names)) {
    test(`a ${format} image is refused by name, not imported as raw`, async () => {
      const file = dir.join(`img.${format}`);
      run('qemu-img', ['create', '-q', '-f', format, file, '8M']);
      await expectFailure(['import', file, '-o', dir.join(`o-${format}.img`)], new RegExp(`is a ${name} image, which is not supported`), `o-${format}`);
      const info = await runCli(['info', file, '--json']);
      assert.equal(info.code, 0, info.stderr);
      const described = JSON.parse(info.stdout) as { format: string; 'import-refused'?: string; 'virtual-size'?: number };
      assert.equal(described.format, format, 'named as qemu-img info names it');
      // What an import would say, for a script as for a reader; no size read from headers we do not parse.
      assert.match(described['import-refused'] ?? '', new RegExp(`^${file.replace(/[.]/g, '\\.')} is a ${name} image, which is not supported: convert it to raw or qcow2 first`));
      assert.equal(described['virtual-size'], undefined);
      const text = await runCli(['info', file]);
      assert.match(text.stdout, new RegExp(`^import: +refused: .* is a ${name} image, which is not supported`, 'm'));
      assert.doesNotMatch(text.stdout, /virtual size/);
    });
  }

  test('info --json names an ISO\'s format as qemu-img info does (raw); format-chain keeps iso', async () => {
    const iso = dir.join('fake.iso');
    const bytes = Buffer.alloc(64 * 1024);
    bytes.write('CD001', 32769, 'latin1');
    writeFileSync(iso, bytes);
    const ours = JSON.parse((await runCli(['info', iso, '--json'])).stdout);
    const qemu = JSON.parse(run('qemu-img', ['info', '--output=json', iso]));
    assert.equal(ours.format, qemu.format);
    assert.deepEqual(ours['format-chain'], ['iso']);
  });

  test('a qcow (version 1) image is refused as the old format it is, with how to convert it', async () => {
    const file = dir.join('old.qcow');
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow', raw, file]);
    const refusal = /the image is in the old qcow format \(version 1\), which is not supported: convert it to qcow2 first \(qemu-img convert -O qcow2\)$/;
    await expectFailure(['convert', file, dir.join('o-qcow1.raw')], refusal, 'o-qcow1');
    sh(`xz -T1 -kf ${file}`);
    await expectFailure(['import', `${file}.xz`, '-o', dir.join('o-qcow1xz.img')], refusal, 'o-qcow1xz');
  });

  test('a LUKS-encrypted image is refused as such, with how to decrypt it', async () => {
    const file = dir.join('img.luks');
    createLuks(file, 'luks');
    await expectFailure(['convert', file, dir.join('o-luks.raw')], /is a LUKS-encrypted image, which is not supported: decrypt it to raw or qcow2 first with its passphrase \(qemu-img convert --object secret.*; a disk its guest encrypts whole is raw: cdi-importer convert -f raw copies it as it is$/, 'o-luks');
    // -f raw overrules the header, as it does qemu-img's probe: the bytes are copied as they are.
    const out = dir.join('o-luks-raw.raw');
    const raw = await runCli(['convert', '-f', 'raw', file, out, '-q']);
    assert.equal(raw.code, 0, raw.stderr);
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', file, `${out}.qemu`]);
    assert.equal(await sha256File(out), await sha256File(`${out}.qemu`));
    sh(`gzip -c ${file} > ${file}.gz`);
    const gz = await runCli(['convert', '-f', 'raw', `${file}.gz`, `${out}.gz-out`, '--json']);
    assert.equal(gz.code, 0, gz.stderr);
    assert.deepEqual(JSON.parse(gz.stdout).formats, ['gzip', 'raw']);
    assert.equal(await sha256File(`${out}.gz-out`), await sha256File(`${out}.qemu`));
  });

  test('a VMDK descriptor file (monolithicFlat) is refused as VMDK, not copied as a text file', async () => {
    const file = dir.join('flat.vmdk');
    run('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', file, '8M']);
    await expectFailure(['convert', file, dir.join('o-flatvmdk.raw')], /is a VMDK image, which is not supported/, 'o-flatvmdk');
  });

  /** A 1 MiB file starting with `fields` (offset, bytes). */
  const headed = (name: string, ...fields: [number, Buffer][]) => {
    const bytes = Buffer.alloc(1 << 20);
    for (const [offset, field] of fields) field.copy(bytes, offset);
    writeFileSync(dir.join(name), bytes);
    return dir.join(name);
  };
  const latin1 = (text: string) => Buffer.from(text, 'latin1');
  const u32le = (value: number) => Buffer.from(new Uint32Array([value]).buffer);
  const bochs = (version: number) => [[0, latin1('Bochs Virtual HD Image')], [32, latin1('Redolog')], [48, latin1('Growing')], [64, u32le(version)]] as [number, Buffer][];
  const descriptor = 'CID=aeb4a49a\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 32768 FLAT "img-flat.vmdk" 0\n';

  // qemu-img reads these but cannot create them (or we make them by hand): headers as its probes
  // see them. Each answer, refused by name or copied as raw, is checked against qemu-img info's.
  const probes: [string, () => string, string | undefined][] = [
    ['bochs', () => headed('img.bochs', ...bochs(0x00020000)), 'Bochs'],
    ['cloop', () => headed('img.cloop', [0, latin1('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n')]), 'cloop'],
    ['vmdk descriptor after comments', () => headed('comments.vmdk', [0, latin1(`# Disk DescriptorFile\n# made by hand\n   \nversion=1\n${descriptor}`)]), 'VMDK'],
    ['vmdk descriptor without comments', () => headed('bare.vmdk', [0, latin1(`version=2\r\n${descriptor}`)]), 'VMDK'],
    // Only look like them: raw to qemu-img.
    ['bochs of another version', () => headed('other.bochs', ...bochs(0x00030000)), undefined],
    ['parallels version 1', () => headed('v1.parallels', [0, latin1('WithoutFreeSpace')], [16, u32le(1)]), undefined],
    ['LUKS2 (a disk its guest encrypts with cryptsetup\'s default)', () => headed('luks2.raw', [0, latin1('LUKS\xba\xbe')], [6, Buffer.from([0, 2])]), undefined],
    ['a comment line and then no version', () => headed('comment.raw', [0, latin1('# Disk DescriptorFile\nCID=1\n')]), undefined],
  ];
  for (const [what, make, name] of probes) {
    test(`${what}: ${name ? `refused as ${name}` : 'converted as raw'}, as qemu-img probes it`, async () => {
      const file = make();
      // A hand-made header opens as raw, or fails to open as the format qemu-img took it for.
      const info = spawnSync('qemu-img', ['info', '--output=json', file], { encoding: 'utf8' });
      const qemu = info.status === 0 ? JSON.parse(info.stdout).format : `not raw: ${info.stderr.trim()}`;
      const out = dir.join(`o-probe-${path.basename(file)}.raw`);
      if (name) {
        assert.notEqual(qemu, 'raw');
        await expectFailure(['convert', file, out], new RegExp(`is a ${name} image, which is not supported`), path.basename(out));
      } else {
        assert.equal(qemu, 'raw');
        const result = await runCli(['convert', file, out, '-q']);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(await sha256File(out), await sha256File(file));
      }
    });
  }

  test('a fixed-size VHD (footer only at the end) is refused, not imported as raw', async () => {
    const file = dir.join('fixed.vhd');
    run('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed', file, '8M']);
    run('qemu-io', ['-f', 'vpc', '-c', 'write -P 0x33 0 1M', file]);
    sh(`zstd -qf ${file}`);
    await expectFailure(['import', file, '-o', dir.join('o-fixedvhd.img')], /is a fixed-size VHD image/, 'o-fixedvhd');
    await expectFailure(['import', `${file}.zst`, '-o', dir.join('o-fixedvhdzst.img')], /is a fixed-size VHD image/, 'o-fixedvhdzst');
    // info describes it as the VHD it is (exit 0, as for a dynamic one), with import's refusal.
    const info = await runCli(['info', file, '--json']);
    assert.equal(info.code, 0, info.stderr);
    const described = JSON.parse(info.stdout) as { format: string; 'format-chain': string[]; 'import-refused'?: string };
    assert.deepEqual([described.format, described['format-chain']], ['vpc', ['vhd']]);
    assert.match(described['import-refused'] ?? '', /is a fixed-size VHD image \(its footer is at the end\), which is not supported/);
  });

  test('a tar given to convert or a disk import says how to extract it', async () => {
    sh(`tar -cf ${dir.join('files.tar')} -C ${dir.path} disk.raw`);
    const extract = /files\.tar is a tar archive, not a disk image: extract its files with cdi-importer import --content-type archive -o DIR \(contentType: archive in a DataVolume\)$/;
    await expectFailure(['convert', dir.join('files.tar'), dir.join('o-tar.raw')], extract, 'o-tar');
    await expectFailure(['import', dir.join('files.tar'), '-o', dir.join('o-tar2.img')], extract, 'o-tar2');
  });

  test('a vmdk inside xz is refused too', async () => {
    run('qemu-img', ['create', '-q', '-f', 'vmdk', dir.join('inner.vmdk'), '8M']);
    sh(`xz -T1 -kf ${dir.join('inner.vmdk')}`);
    await expectFailure(['import', dir.join('inner.vmdk.xz'), '-o', dir.join('o-vmdkxz.img')], /is a VMDK image/, 'o-vmdkxz');
  });

  test('a missing source file', async () => {
    await expectFailure(['import', dir.join('nope.raw'), '-o', dir.join('o-nope.img')], /source file .*nope.raw does not exist/, 'o-nope');
  });
});

describe('bad destinations', () => {
  test('a full quota (EDQUOT, which Node 20 has no name for) is said in words, on the native and the JavaScript write path', async () => {
    const image = dir.join('quota.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', image, '8M']);
    run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 7 0 4M', image]);
    for (const native of ['1', '0']) {
      const out = dir.join(`quota-${native}.img`);
      const result = await runCli(['import', image, '-o', out, '-q'], {
        env: { CDI_IMPORTER_NATIVE_COPY: native },
        wrap: ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=pwrite64', '-e', 'inject=pwrite64:error=EDQUOT:when=1'],
      });
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, `cdi-importer: error: disk quota exceeded while writing ${out}\n`, `native copy ${native}`);
      assert.deepEqual(readdirSync(dir.path).filter((name) => name.includes(`quota-${native}`)), []);
    }
  });

  test('destination directory missing', async () => {
    const result = await runCli(['import', raw, '-o', dir.join('missing-dir', 'disk.img')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr.trim(), /^cdi-importer: error: destination directory of .*missing-dir\/disk.img does not exist/);
    assert.equal(existsSync(dir.join('missing-dir')), false);
  });

  test('convert into a missing directory names the output, not the scratch directory it would default to', async () => {
    const result = await runCli(['convert', raw, dir.join('missing-dir-2', 'disk.raw')]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr.trim(), /^cdi-importer: error: destination directory of .*missing-dir-2\/disk.raw does not exist/);
  });

  test('destination is a directory', async () => {
    mkdirSync(dir.join('adir'));
    const result = await runCli(['import', raw, '-o', dir.join('adir')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /is a directory: give a file name/);
    assert.deepEqual(readdirSync(dir.join('adir')), []);
  });

  test('a destination ending in / is a directory: never the file without the slash, created or replaced', async () => {
    const missing = await runCli(['convert', raw, `${dir.join('no-such-dir')}/`]);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr.trim(), /^cdi-importer: error: \S+\/no-such-dir\/ ends in \/, a directory, and there is none: create it first and name the disk image inside it \(e\.g\. \S+\/no-such-dir\/disk\.img\)$/);
    assert.equal(existsSync(dir.join('no-such-dir')), false);
    writeFileSync(dir.join('kept.img'), 'old disk');
    const file = await runCli(['import', raw, '-o', `${dir.join('kept.img')}/`]);
    assert.equal(file.code, 1, file.stderr);
    assert.match(file.stderr, /kept\.img\/ ends in \/, a directory, but \S+kept\.img is not one: leave the \/ out to write \S+kept\.img itself, or give another file name$/m);
    assert.equal(readFileSync(dir.join('kept.img'), 'utf8'), 'old disk');
    assert.deepEqual(outputsNamed('kept.img'), ['kept.img']);
  });

  test('a file system too small for the image: refused before writing', async (t) => {
    const mount = mountTmpfs(t, dir.path, '4m');
    if (!mount) return;
    const result = await runCli(['import', raw, '-o', `${mount}/disk.img`]);
    assert.equal(result.code, 1);
    // 6 MiB on 4 MiB: keeping nothing free would not make room either, so that is not offered.
    assert.match(result.stderr, /virtual image size \d+ is larger than the reported available storage \d+: write it where there is more room$/m);
    assert.doesNotMatch(result.stderr, /--size/, 'a --size could only lower the limit');
    assert.doesNotMatch(result.stderr, /PVC/, 'the pod\'s words are for the pod');
    assert.deepEqual(readdirSync(mount), []);
  });

  test('a read-only file system is said to be one, not too small (an ISO or squashfs reports no free space)', async (t) => {
    const mount = mountTmpfs(t, dir.path, '1m');
    if (!mount) return;
    run('mount', ['-o', 'remount,ro', mount]);
    for (const command of ['import', 'convert']) {
      const result = await runCli([command, raw, `${mount}/disk.img`]);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, `cdi-importer: error: ${mount}/disk.img is on a read-only file system: write it to another, or remount this one read-write\n`);
    }
  });

  test('too small only because of the space kept free: the line offers --filesystem-overhead, and it works', async (t) => {
    // 18 MiB on 18 MiB: 6 % kept free leaves 16 MiB (whole MiB), none kept free all 18.
    const mount = mountTmpfs(t, dir.path, '18m');
    if (!mount) return;
    const image = dir.join('disk-18m.raw');
    makeDiskLikeImage(image, 18 * MiB);
    const result = await runCli(['import', image, '-o', `${mount}/disk.img`]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /: write it where there is more room, or lower --filesystem-overhead \(6 % of the space is kept free; 0 keeps none\)$/m);
    assert.deepEqual(readdirSync(mount), []);
    const taken = await runCli(['import', image, '-o', `${mount}/disk.img`, '--filesystem-overhead', '0', '-q']);
    assert.equal(taken.code, 0, taken.stderr);
  });

  test('too small even with no space kept free (17.5 MiB on 17 MiB): --filesystem-overhead is not offered', async (t) => {
    const mount = mountTmpfs(t, dir.path, '17m');
    if (!mount) return;
    const image = dir.join('disk-17.5m.raw');
    makeDiskLikeImage(image, 17.5 * MiB);
    const result = await runCli(['import', image, '-o', `${mount}/disk.img`]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /: write it where there is more room$/m);
    const zero = await runCli(['import', image, '-o', `${mount}/disk.img`, '--filesystem-overhead', '0']);
    assert.equal(zero.code, 1, 'it would not have helped');
  });

  test('too small because the file it replaces still holds its space: the line says so', async (t) => {
    const mount = mountTmpfs(t, dir.path, '16m');
    if (!mount) return;
    const image = dir.join('rand6-b.raw');
    sh(`head -c ${6 * MiB} /dev/urandom > ${image}`);
    const first = await runCli(['import', image, '-o', `${mount}/disk.img`]);
    assert.equal(first.code, 0, first.stderr);
    sh(`head -c ${10 * MiB} /dev/urandom > ${dir.join('rand10.raw')}`);
    const again = await runCli(['import', dir.join('rand10.raw'), '-o', `${mount}/disk.img`]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /; the existing \S+\/disk\.img \(6\.0 MiB on disk\) is replaced only once the new image is complete, so both must fit until then: remove it first if it can go$/m);
    // An image that would not fit even in the space the old one frees: removing it is not offered.
    sh(`head -c ${24 * MiB} /dev/urandom > ${dir.join('rand24.raw')}`);
    const larger = await runCli(['import', dir.join('rand24.raw'), '-o', `${mount}/disk.img`]);
    assert.equal(larger.code, 1);
    assert.match(larger.stderr, /is larger than the reported available storage \d+: write it where there is more room/);
    assert.doesNotMatch(larger.stderr, /remove it first/);
  });

  test('--size too small and the free space smaller still: the line asks for both', async (t) => {
    const mount = mountTmpfs(t, dir.path, '8m');
    if (!mount) return;
    const image = dir.join('virtual16.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', image, '16M');
    const result = await runCli(['import', image, '-o', `${mount}/disk.img`, '--size', '12Mi']);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /: give a --size of at least \d+Mi for this 16\.0 MiB image .*; and write it where there is more room: the file system has only 8\.0 MiB free$/m);
  });

  test('scratch space too small for the clusters a one-pass qcow2 must set aside: the line names the scratch space and what to do', async (t) => {
    const mount = mountTmpfs(t, dir.path, '1m');
    if (!mount) return;
    const image = dir.join('moved-l2-big.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', image, '16M');
    qemuIo(image, 'write -P 0x5a 0 6M');
    moveL2TableToEnd(image, 0);
    const out = dir.join('scratch-full.img');
    const result = await runCli(['import', xzCompress(image), '-o', out, '--scratch', mount]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^cdi-importer: error: the scratch space \S+ is full after \d+ bytes of clusters set aside .*give a larger scratch directory or volume, or import it from a seekable source \(the \.qcow2 decompressed first, or HTTP with Range\)$/m);
    assert.deepEqual(readdirSync(mount), [], 'the spill file is gone');
    assert.equal(existsSync(out), false);
  });

  test('convert, like qemu-img convert: a sparse image larger than the free space converts; real data that does not fit fails cleanly', async (t) => {
    const mount = mountTmpfs(t, dir.path, '4m');
    if (!mount) return;
    const sparse = dir.join('sparse-64m.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', sparse, '64M']);
    run('qemu-io', ['-c', 'write -P 0x5a 40M 1M', sparse], { stdio: 'pipe' });
    const ok = await runCli(['convert', sparse, `${mount}/disk.raw`]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(statSync(`${mount}/disk.raw`).size, 64 * MiB);
    assert.equal(await sha256File(`${mount}/disk.raw`), await qemuRawSha256(sparse, dir.path));
    rmSync(`${mount}/disk.raw`);

    sh(`head -c ${6 * MiB} /dev/urandom > ${dir.join('rand6.raw')}`);
    run('qemu-img', ['convert', '-O', 'qcow2', dir.join('rand6.raw'), dir.join('rand6.qcow2')]);
    const full = await runCli(['convert', dir.join('rand6.qcow2'), `${mount}/disk.raw`]);
    assert.equal(full.code, 1);
    assert.match(full.stderr.trim(), /no space left on the device/);
    assert.equal(full.stderr.trim().split('\n').length, 1, full.stderr);
    assert.deepEqual(readdirSync(mount), []);
  });

  test('a tmpfs with no size limit (size=0: statfs reports no blocks at all) takes imports, as any file system with room', async (t) => {
    const mount = mountTmpfs(t, dir.path, '0');
    if (!mount) return;
    const disk = `${mount}/disk.img`;
    const result = await runCli(['import', dir.join('disk.raw.xz'), '-o', disk, '--size', '16Mi']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(statSync(disk).size, 16 * MiB - MiB); // --size less the 6 % overhead, rounded down to MiB
    const grown = dir.join('grown-reference.raw');
    sh(`cp ${raw} ${grown} && truncate -s ${15 * MiB} ${grown}`);
    assert.equal(await sha256File(disk), await sha256File(grown));
    const archive = dir.join('two-files.tar');
    sh(`cd ${dir.path} && mkdir -p tree && printf a > tree/a && printf bb > tree/b && tar -cf ${archive} -C tree a b`);
    mkdirSync(`${mount}/tree`);
    const extracted = await runCli(['import', archive, '-o', `${mount}/tree`, '--content-type', 'archive']);
    assert.equal(extracted.code, 0, extracted.stderr);
    assert.deepEqual(readdirSync(`${mount}/tree`).sort(), ['a', 'b']);
  });

  test('a file system that fills up mid-write (size unknown in advance): clear error, nothing left', async (t) => {
    const mount = mountTmpfs(t, dir.path, '3m');
    if (!mount) return;
    // Random data does not compress, so the xz stream is as big as the disk: fills the 3 MiB tmpfs.
    sh(`head -c ${5 * MiB} /dev/urandom > ${dir.join('rand.raw')} && xz -T1 -0 -kf ${dir.join('rand.raw')}`);
    const result = await runCli(['import', dir.join('rand.raw.xz'), '-o', `${mount}/disk.img`, '--filesystem-overhead', '0']);
    assert.equal(result.code, 1);
    assert.match(result.stderr.trim(), /is larger than the reported available storage|no space left on the device/);
    assert.deepEqual(readdirSync(mount), []);
  });
});

test('a directory that takes no new files (/proc) is said as that, not as a missing directory', async () => {
  const raw = dir.join('proc-source.raw');
  sh(`head -c 1048576 /dev/urandom > ${raw}`);
  const result = await runCli(['convert', raw, '/proc/cdi-importer-test.img']);
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stderr, 'cdi-importer: error: cannot create /proc/cdi-importer-test.img: /proc does not take new files (a special file system?): write it elsewhere\n');
});

test('usage errors exit 2 with a hint', async () => {
  // A mistyped command is not pod mode (whose arguments are klog flags).
  const typo = await runCli(['improt', raw, dir.join('typo.img')]);
  assert.equal(typo.code, 2, typo.stderr);
  assert.match(typo.stderr, /^cdi-importer: error: unknown command "improt" \(did you mean import\?\); commands: import, convert/);
  assert.deepEqual(outputsNamed('typo.img'), []);
  // Said as every other usage error is: the `error:` prefix, and an object for a pipeline that asked for JSON.
  const typoJson = await runCli(['improt', raw, dir.join('typo.img'), '--json']);
  assert.equal(typoJson.code, 2, typoJson.stderr);
  assert.match(JSON.parse(typoJson.stdout).error, /^unknown command "improt" \(did you mean import\?\); commands: import, convert/);
  assert.equal(JSON.parse(typoJson.stdout).category, 'usage');
  // A scratch directory is checked before the import starts, not when a spill first needs it.
  const scratch = await runCli(['import', raw, '-o', dir.join('scratch.img'), '--scratch', dir.join('no-such-dir')]);
  assert.equal(scratch.code, 2, scratch.stderr);
  assert.match(scratch.stderr, /cannot use scratch directory .*no-such-dir: no such file or directory/);
  assert.deepEqual(outputsNamed('scratch.img'), []);
  // A pipeline that asked for JSON gets an object even when commander finds the mistake.
  const bogus = await runCli(['import', raw, '--bogus', '--json']);
  assert.equal(bogus.code, 2);
  assert.deepEqual(JSON.parse(bogus.stdout), { ok: false, category: 'usage', error: "unknown option '--bogus'" });
  const unknown = await runCli(['import']);
  assert.equal(unknown.code, 2);
  // commander's findings are one line too, as every other failure.
  assert.equal(unknown.stderr, "cdi-importer: error: missing required argument 'source' (see cdi-importer import --help)\n");
  // commander's suggestion for a misspelt flag joins the line rather than starting one of its own.
  const misspelt = await runCli(['convert', raw, dir.join('misspelt.raw'), '--progres', '--json']);
  assert.equal(misspelt.code, 2);
  assert.equal(misspelt.stderr, "cdi-importer: error: unknown option '--progres' (Did you mean --progress?) (see cdi-importer convert --help)\n");
  assert.equal(JSON.parse(misspelt.stdout).error, "unknown option '--progres' (Did you mean --progress?)");
  const archiveFormat = await runCli(['import', '--content-type', 'archive', '-f', 'qcow2', raw, '-o', dir.path]);
  assert.equal(archiveFormat.code, 2);
  assert.equal(archiveFormat.stderr, "cdi-importer: error: -f qcow2 names a disk image's format; an archive import extracts a tar (leave -f out)\n");
  // `help` for a command there is none of says so (found by a QA pass: the whole help, and nothing about what was wrong).
  const noHelp = await runCli(['help', 'imprt']);
  assert.equal(noHelp.code, 2);
  assert.match(noHelp.stderr, /^cdi-importer: error: no help for "imprt": unknown command \(did you mean import\?\); commands: import, /);
  assert.equal(noHelp.stderr.split('\n').length, 2, noHelp.stderr);
  // import's -o given to convert, where -o is qemu-img's output options and takes the output's name (found by a QA pass).
  const importStyle = await runCli(['convert', raw, '-o', dir.join('import-style.raw')]);
  assert.equal(importStyle.code, 2);
  assert.equal(
    importStyle.stderr,
    `cdi-importer: error: missing the output: cdi-importer convert IN OUT (-o is qemu-img's output options here, as in qemu-img convert, not import's --dest: it took "${dir.join('import-style.raw')}") (see cdi-importer convert --help)\n`,
  );
  assert.deepEqual(outputsNamed('import-style.raw'), []);
  const badSize = await runCli(['import', raw, '-o', dir.join('x.img'), '--size', '12 parsecs']);
  assert.equal(badSize.code, 2);
  assert.match(badSize.stderr, /invalid quantity "12 parsecs"/);
  // An unset shell variable gives an empty argument.
  const emptyDest = await runCli(['convert', raw, '']);
  assert.equal(emptyDest.code, 2, emptyDest.stderr);
  assert.match(emptyDest.stderr, /the destination is an empty string/);
  for (const args of [['import', '', dir.join('empty-source.img')], ['info', '']]) {
    const emptySource = await runCli(args);
    assert.equal(emptySource.code, 2, emptySource.stderr);
    assert.match(emptySource.stderr, /the source is an empty string/);
  }
  const emptyScratch = await runCli(['import', raw, dir.join('empty-scratch.img'), '--scratch', '']);
  assert.equal(emptyScratch.code, 2, emptyScratch.stderr);
  assert.match(emptyScratch.stderr, /--scratch is an empty string/);
  // A name of spaces alone is a slip too, and said as what it is.
  const spaces = await runCli(['import', raw, '-o', '  ']);
  assert.equal(spaces.code, 2, spaces.stderr);
  assert.equal(spaces.stderr, 'cdi-importer: error: the destination is only white space ("  "): give a file, a block device or a directory\n');
  const emptyManifest = await runCli(['datavolume', '']);
  assert.equal(emptyManifest.code, 2, emptyManifest.stderr);
  assert.match(emptyManifest.stderr, /the manifest is an empty string/);
  const emptyOut = await runCli(['datavolume', raw, '--out', '']);
  assert.equal(emptyOut.code, 2, emptyOut.stderr);
  assert.match(emptyOut.stderr, /--out is an empty string/);
  // Number('') is 0: an empty overhead would silently keep nothing free.
  for (const command of ['import', 'datavolume']) {
    const emptyOverhead = await runCli([command, raw, '--filesystem-overhead', '', ...(command === 'import' ? ['-o', dir.join('overhead.img')] : [])]);
    assert.equal(emptyOverhead.code, 2, emptyOverhead.stderr);
    assert.match(emptyOverhead.stderr, /invalid filesystem overhead ""/);
  }
  const badType = await runCli(['import', raw, '--content-type', 'zip']);
  assert.equal(badType.code, 2);
  assert.match(badType.stderr, /invalid --content-type "zip"/);
});

test('--help documents every import option', async () => {
  const result = await runCli(['import', '--help']);
  assert.equal(result.code, 0);
  for (const flag of ['--dest', '--content-type', '--size', '--filesystem-overhead', '--preallocation', '--checksum', '--scratch', '--json', '--quiet', '--progress']) {
    assert.match(result.stdout, new RegExp(flag));
  }
});

describe('mistyped URLs', () => {
  test('a URL with no host, and one slash short of a URL: usage errors that say so', async () => {
    for (const [source, message] of [
      ['http:///disk.qcow2', /the URL "http:\/\/\/disk\.qcow2" has no host name: write it as http\(s\):\/\/HOST\/PATH/],
      ['http:/127.0.0.1:8080/disk.qcow2', /"http:\/127\.0\.0\.1:8080\/disk\.qcow2" is not a URL \(one slash after the scheme\): did you mean http:\/\/127\.0\.0\.1:8080\/disk\.qcow2\?/],
      ['docker:/quay.io/containerdisks/fedora', /did you mean docker:\/\/quay\.io\/containerdisks\/fedora\?/],
    ] as const) {
      const result = await runCli(['import', source, '-o', dir.join('typo.img')]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trim().split('\n').length, 1);
    }
    // A file that really is at such a path is imported: it is no typo.
    mkdirSync(dir.join('cwd', 'http:'), { recursive: true });
    writeFileSync(dir.join('cwd', 'http:', 'disk.raw'), Buffer.alloc(1 << 20, 1));
    const real = await runCli(['import', 'http:/disk.raw', '-o', dir.join('real-path.img'), '-q'], { cwd: dir.join('cwd') });
    assert.equal(real.code, 0, real.stderr);
  });
});

describe('passwords written into a source', () => {
  test('are never shown, in any usage error about the source', async () => {
    const password = 'S3cret/Pw';
    for (const source of [
      `docker://reguser:${password}@127.0.0.1:5000/qa/x:latest`,
      `http://qauser:${password}@127.0.0.1:8080/auth/x`, // a "/" in it: no URL parser takes this
      `ftp://qauser:${password}@127.0.0.1/y`,
      `http:/qauser:${password}@127.0.0.1:8080/z`,
    ]) {
      for (const json of [false, true]) {
        const result = await runCli(['import', source, '-o', dir.join('leak.img'), ...(json ? ['--json'] : [])]);
        assert.equal(result.code, 2, `${source}: ${result.stderr}`);
        assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
        assert.ok(!`${result.stdout}${result.stderr}`.includes('S3cret'), `${source}: ${result.stdout}${result.stderr}`);
        assert.match(result.stderr, /\*\*\*@127\.0\.0\.1/, 'the rest of the address is still shown');
      }
    }
  });
});

describe('mistakes a terminal user makes', () => {
  test('- with standard input at a terminal: refused at once (nothing would come), not a silent wait', () => {
    const command = [process.execPath, ...cliCommand, 'import', '-', dir.join('tty.img')].map((a) => `'${a}'`).join(' ');
    const result = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', timeout: 60_000, cwd: repoRoot });
    assert.equal(result.status, 2, result.stdout);
    assert.match(result.stdout, /standard input is a terminal: pipe the image in/);
    assert.deepEqual(outputsNamed('tty.img'), []);
  });

  test('--size 0 is a usage error, not a volume too small', async () => {
    const result = await runCli(['import', raw, '-o', dir.join('size0.img'), '--size', '0']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /--size 0 is no volume: give the requested size/);
  });
});
