/**
 * `cdi-importer import --content-type archive` end to end through the real binary: plain and
 * compressed tars from a file and from stdin, compared with `tar -x`; refusals as one line
 * with the target left as it was; the block-device refusal.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createReadStream, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { mainScript, repoRoot, runCli } from '../../support/cli.js';
import { buildSampleTree, diffTrees, gnuTar, pythonTar, treeListing } from '../../support/tar-fixtures.js';
import { makeTempDir, run, sh, type TempDir } from '../../support/tools.js';

let tmp: TempDir;
let archive: string;
let reference: string;
let n = 0;

before(() => {
  tmp = makeTempDir('cdi-archive-cli-');
  const src = tmp.join('src');
  mkdirSync(src);
  buildSampleTree(src, { longFileName: true });
  archive = tmp.join('sample.tar');
  gnuTar(src, archive, 'gnu', ['--sparse']);
  sh(`cd '${tmp.path}' && gzip -kf sample.tar && xz -kf -T1 sample.tar && zstd -qf sample.tar`);
  reference = tmp.join('reference');
  mkdirSync(reference);
  run('tar', ['-xf', archive, '-C', reference]);
});
after(() => tmp.remove());

function freshTarget(): string {
  const dir = tmp.join(`out-${n++}`);
  mkdirSync(dir);
  return dir;
}

interface JsonResult {
  ok: boolean;
  formats: string[];
  bytesWritten: number;
  archive: { files: number; directories: number; links: number; bytes: number; dataBytes: number; skipped: string[] };
}

describe('archive import through the CLI', () => {
  for (const [name, formats] of [
    ['sample.tar', ['tar']],
    ['sample.tar.gz', ['gzip', 'tar']],
    ['sample.tar.xz', ['xz', 'tar']],
    ['sample.tar.zst', ['zstd', 'tar']],
  ] as Array<[string, string[]]>) {
    it(`${name} from a file`, async () => {
      const out = freshTarget();
      const result = await runCli(['import', '--content-type', 'archive', tmp.join(name), '-o', out, '--json']);
      assert.equal(result.code, 0, result.stderr);
      const json = JSON.parse(result.stdout) as JsonResult;
      assert.deepEqual(json.formats, formats);
      assert.deepEqual(json.archive, {
        files: 8,
        directories: 7,
        links: 5,
        bytes: 300000 + 6 + 4 + 9 + 6 * 2 ** 20 + 5000 + 65536 + 4 + 0 + 2,
        // Written: of sparse.img (stored whole: no --sparse) the two 4 KiB blocks holding "one" and "two";
        // of zero-runs.bin its first two blocks and the last one's 908 bytes up to the end of "tail".
        dataBytes: 300000 + 6 + 4 + 9 + 4096 + 4096 + 8192 + 908 + 0 + 2,
        skipped: [],
      });
      assert.equal(json.bytesWritten, json.archive.dataBytes);
      assert.equal(diffTrees(out, reference), '');
      assert.deepEqual(treeListing(out), treeListing(reference));
    });
  }

  it('a tar.xz from stdin (-)', async () => {
    const out = freshTarget();
    const result = await runCli(['import', '--content-type', 'archive', '-', '-o', out, '--json'], {
      input: createReadStream(tmp.join('sample.tar.xz')),
    });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual((JSON.parse(result.stdout) as JsonResult).formats, ['xz', 'tar']);
    assert.equal(diffTrees(out, reference), '');
  });

  it('lists entries of unknown types it skips in the JSON result', async () => {
    // POSIX has unknown types read as regular files; we extract only the four kinds SPEC §6 names.
    const odd = tmp.join('odd.tar');
    pythonTar(odd, `add('a.txt', data=b'a')\nadd('contiguous.bin', 'CONTTYPE', size=0)\ninfo = tarfile.TarInfo('odd-type'); info.type = b'Z'; t.addfile(info)`);
    const out = freshTarget();
    const result = await runCli(['import', '--content-type', 'archive', odd, '-o', out, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const json = JSON.parse(result.stdout) as JsonResult;
    assert.deepEqual(json.archive.skipped, ['"odd-type": unsupported entry type "Z"']);
    assert.equal(json.archive.files, 2);
    assert.deepEqual(treeListing(out).map((l) => l.split(' ')[0]), ['a.txt', 'contiguous.bin']);
  });

  it('refuses a hostile archive with one line and leaves the target as it was', async () => {
    const out = freshTarget();
    writeFileSync(`${out}/existing.txt`, 'mine');
    const before = treeListing(out);
    const evil = tmp.join('evil.tar.gz');
    pythonTar(tmp.join('evil.tar'), `add('ok/a.txt', data=b'a' * 9000)\nadd('ok/link', 'SYMTYPE', linkname='../../outside')`);
    sh(`gzip -c '${tmp.join('evil.tar')}' > '${evil}'`);
    const result = await runCli(['import', '--content-type', 'archive', evil, '-o', out]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, /archive entry "ok\/link": symlink target "..\/..\/outside" points outside the target directory/);
    assert.deepEqual(treeListing(out), before);
  });

  it('tars without ustar magic, as GNU tar writes and reads them: v7, a volume label first, an empty archive', async () => {
    const src = tmp.join('plain-src');
    mkdirSync(src, { recursive: true });
    writeFileSync(`${src}/a.txt`, 'hello\n');
    mkdirSync(`${src}/d`, { recursive: true });
    writeFileSync(`${src}/d/b.txt`, 'world\n');
    const cases: Array<[string, string[]]> = [
      ['v7.tar', ['--format=v7', '-cf', tmp.join('v7.tar'), '-C', src, 'a.txt', 'd']],
      ['label.tar', ['-V', 'BACKUP-1', '-cf', tmp.join('label.tar'), '-C', src, 'a.txt', 'd']],
      ['empty.tar', ['-cf', tmp.join('empty.tar'), '-T', '/dev/null']],
    ];
    for (const [name, args] of cases) {
      run('tar', args);
      const expected = freshTarget();
      run('tar', ['-xf', tmp.join(name), '-C', expected]);
      const out = freshTarget();
      const result = await runCli(['import', '--content-type', 'archive', tmp.join(name), '-o', out]);
      assert.equal(result.code, 0, `${name}: ${result.stderr}`);
      assert.match(result.stderr, /^Extracted tar into /, name);
      assert.deepEqual(treeListing(out), treeListing(expected), name);
      assert.equal(diffTrees(out, expected), '', name);
      // What is left out on purpose is said in the summary, not only in --json.
      if (name === 'label.tar') assert.match(result.stderr, /; 1 entry skipped \("BACKUP-1": volume label\)$/m);
    }
    // A raw disk is still not an archive.
    const notTar = await runCli(['import', '--content-type', 'archive', tmp.join('sample.tar.gz'), '-o', freshTarget()]);
    assert.equal(notTar.code, 0, 'sanity: a real one works');
    writeFileSync(tmp.join('random.img'), randomBytes(64 * 1024));
    const refused = await runCli(['import', '--content-type', 'archive', tmp.join('random.img'), '-o', freshTarget()]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /random\.img is not a tar archive \(found raw\)/);
    // A file system image starts with zero sectors too, but it is no empty archive.
    run('truncate', ['-s', '8M', tmp.join('fs.img')]);
    run('mkfs.ext4', ['-q', '-F', tmp.join('fs.img')]);
    const fs = await runCli(['import', '--content-type', 'archive', tmp.join('fs.img'), '-o', freshTarget()]);
    assert.equal(fs.code, 1);
    assert.match(fs.stderr, /fs\.img is not a tar archive \(found raw\)/);
  });

  it('a tar whose first member is named like another format\'s magic ("QED", "KDMV…", "conectix…") is a tar', async () => {
    // Found by a QA pass: a tar's first bytes are its first member's name, and those magics were
    // looked for before the ustar magic (at byte 257) was.
    for (const name of ['QED', 'KDMV.txt', 'COWDUMP', 'conectix.cfg', 'vhdxfile.bak']) {
      const src = tmp.join(`magic-${name}`);
      mkdirSync(src);
      writeFileSync(`${src}/${name}`, 'data\n');
      const tar = tmp.join(`magic-${name}.tar`);
      run('tar', ['-cf', tar, '-C', src, name]);
      for (const input of [tar, `${tar}.gz`]) {
        if (input.endsWith('.gz')) sh(`gzip -nkf '${tar}'`);
        const out = freshTarget();
        const result = await runCli(['import', '--content-type', 'archive', input, '-o', out]);
        assert.equal(result.code, 0, `${input}: ${result.stderr}`);
        assert.equal(readFileSync(`${out}/${name}`, 'latin1'), 'data\n');
      }
    }
  });

  it('says that --preallocation, --filesystem-overhead and --scratch do nothing for an archive', async () => {
    const out = freshTarget();
    const result = await runCli(['import', '--content-type', 'archive', archive, '-o', out, '--preallocation', '--filesystem-overhead', '0.1', '--scratch', tmp.path]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /^cdi-importer: note: --preallocation does not apply to an archive import/m);
    assert.match(result.stderr, /^cdi-importer: note: --filesystem-overhead does not apply to an archive import/m);
    assert.match(result.stderr, /^cdi-importer: note: --scratch does not apply to an archive import/m);
    assert.equal(diffTrees(out, reference), '');
  });

  it('refuses an archive larger than --size before writing it', async () => {
    const out = freshTarget();
    const result = await runCli(['import', '--content-type', 'archive', tmp.join('sample.tar.zst'), '-o', out, '--size', '200Ki', '--json']);
    assert.equal(result.code, 1, result.stdout);
    const json = JSON.parse(result.stdout) as { ok: boolean; category: string; error: string };
    assert.equal(json.category, 'too-small');
    assert.match(json.error, /archive content size \d+ \(through entry "[^"]+"\) is larger than the reported available storage 204800: extract it where there is more room, or give a larger --size$/);
    assert.deepEqual(treeListing(out), []);
  });

  it('--checksum: a mismatch found at the end removes everything extracted; a match succeeds', async () => {
    const gz = tmp.join('sample.tar.gz');
    const out = freshTarget();
    writeFileSync(`${out}/existing.txt`, 'mine');
    const before = treeListing(out);
    const wrong = await runCli(['import', '--content-type', 'archive', gz, '-o', out, '--checksum', `sha256:${'0'.repeat(64)}`, '--json']);
    assert.equal(wrong.code, 1);
    assert.equal((JSON.parse(wrong.stdout) as { category: string }).category, 'checksum');
    assert.deepEqual(treeListing(out), before);

    const sha = run('sha256sum', [gz]).slice(0, 64); // of the source bytes as sent, before gunzip
    const right = await runCli(['import', '--content-type', 'archive', gz, '-o', out, '--checksum', `sha256:${sha}`, '--json']);
    assert.equal(right.code, 0, right.stderr);
    assert.equal((JSON.parse(right.stdout) as { checksum: string }).checksum, `sha256:${sha}`);
    rmSync(`${out}/existing.txt`);
    assert.equal(diffTrees(out, reference), '');
  });

  for (const [name, layer] of [
    ['sample.tar.gz', 'gzip'],
    ['sample.tar.xz', 'xz'],
    ['sample.tar.zst', 'zstd'],
  ]) {
    it(`a truncated ${name} fails with one line and removes what was extracted`, async () => {
      const truncated = tmp.join(`truncated-${name}`);
      sh(`head -c 150000 '${tmp.join(name)}' > '${truncated}'`);
      const out = freshTarget();
      writeFileSync(`${out}/existing.txt`, 'mine');
      const before = treeListing(out);
      const result = await runCli(['import', '--content-type', 'archive', truncated, '-o', out]);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`${layer} data is corrupt or truncated`));
      assert.deepEqual(treeListing(out), before);
    });
  }

  it('SIGTERM mid-archive (from stdin): exit 1, "cancelled", everything extracted so far removed', async () => {
    const out = freshTarget();
    const child = spawn(process.execPath, ['--import', 'tsx', mainScript, 'import', '--content-type', 'archive', '-', '-o', out], {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.stdin.on('error', () => {});
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const tar = readFileSync(archive);
    child.stdin.write(tar.subarray(0, tar.length - 4096)); // everything but the end: the import waits for more
    for (let i = 0; i < 600 && treeListing(out).length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(treeListing(out).length >= 3, 'entries were extracted before the signal');
    child.kill('SIGTERM');
    assert.equal(await closed, 1);
    assert.match(stderr, /^cdi-importer: error: archive extraction cancelled: received SIGTERM\n$/);
    assert.deepEqual(treeListing(out), []);
  });

  it('a destination that is missing, or whose name the file system cannot hold, is said as such', async () => {
    const missing = await runCli(['import', '--content-type', 'archive', archive, '-o', tmp.join('no-such-dir')]);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr.trim(), /^cdi-importer: error: destination directory \S*no-such-dir does not exist: create it first$/);
    const tooLong = await runCli(['import', '--content-type', 'archive', archive, '-o', tmp.join('a'.repeat(300))]);
    assert.equal(tooLong.code, 1, tooLong.stderr);
    assert.match(tooLong.stderr.trim(), /^cdi-importer: error: cannot use \S*a{300} as the destination directory: a name longer than the file system allows/);
  });

  it('refuses a block device target', async () => {
    const backing = tmp.join('block.img');
    run('truncate', ['-s', '4M', backing]);
    const device = run('losetup', ['--find', '--show', backing]).trim();
    try {
      const result = await runCli(['import', '--content-type', 'archive', archive, '-o', device]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /ContentType Archive cannot have block volumeMode/);
    } finally {
      run('losetup', ['-d', device]);
    }
  });
});
