/** Less common archives: appended duplicates, links to links, loops, a corrupt sparse map, cancellation. */
import assert from 'node:assert/strict';
import { createReadStream, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { isImportError } from '../../../src/errors.js';
import { extractArchive } from '../../../src/targets/archive/index.js';
import { diffTrees, pythonTar, treeListing } from '../../support/tar-fixtures.js';
import { makeTempDir, run, sh, type TempDir } from '../../support/tools.js';

describe('archive edge cases', () => {
  let tmp: TempDir;
  let n = 0;
  before(() => {
    tmp = makeTempDir('cdi-archive-edge-');
  });
  after(() => tmp.remove());
  const fresh = (name: string) => {
    const dir = tmp.join(`${name}-${n++}`);
    mkdirSync(dir);
    return dir;
  };
  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => assert.fail('extraction succeeded'),
      (e: unknown) => {
        assert.ok(isImportError(e), `an ImportError, got ${String(e)}`);
        return e;
      },
    );

  it('a later member of the same name wins, as with tar -x (tar -r appends)', async () => {
    const src = fresh('dup-src');
    const archive = tmp.join('dup.tar');
    sh(`cd '${src}' && printf first > f.txt && mkdir d && tar -cf '${archive}' f.txt d && printf 'second version' > f.txt && tar -rf '${archive}' f.txt`);
    const [ours, reference] = [fresh('dup-ours'), fresh('dup-ref')];
    run('tar', ['-xf', archive, '-C', reference]);
    await extractArchive(createReadStream(archive), ours);
    assert.equal(readFileSync(`${ours}/f.txt`, 'utf8'), 'second version');
    assert.equal(diffTrees(ours, reference), '');
    assert.deepEqual(treeListing(ours), treeListing(reference));
  });

  it('a directory entry with a size field: no data is read for it, as GNU tar and Go read it', async () => {
    const archive = tmp.join('dir-size.tar');
    pythonTar(archive, `add('d/', 'DIRTYPE', size=512, mode=0o755)\nadd('d/empty')\nadd('d/file', data=b'inside')`);
    const [ours, reference] = [fresh('dir-size-ours'), fresh('dir-size-ref')];
    run('tar', ['-xf', archive, '-C', reference]);
    const result = await extractArchive(createReadStream(archive), ours);
    assert.equal(result.files, 2);
    assert.equal(readFileSync(`${ours}/d/file`, 'utf8'), 'inside');
    assert.equal(diffTrees(ours, reference), '');
  });

  it('a regular-file entry whose name ends in "/" is a directory (the V7 way), as tar -x reads it', async () => {
    for (const type of ['REGTYPE', 'AREGTYPE']) {
      const archive = tmp.join(`slash-${type}.tar`);
      pythonTar(archive, `add('x/', '${type}', mode=0o755)\nadd('x/f', data=b'abc')`);
      const [ours, reference] = [fresh('slash-ours'), fresh('slash-ref')];
      run('tar', ['-xf', archive, '-C', reference]);
      await extractArchive(createReadStream(archive), ours);
      assert.equal(readFileSync(`${ours}/x/f`, 'utf8'), 'abc', type);
      assert.equal(diffTrees(ours, reference), '', type);
    }
  });

  it('a regular-file entry named "d/" with a size field: no data is read for it, so the entries after it are extracted', async () => {
    const archive = tmp.join('slash-size.tar');
    // tarfile would write the size's data; the header is written alone, as such archives come.
    run('python3', [
      '-c',
      `import tarfile
def header(name, size):
    info = tarfile.TarInfo(name); info.size = size; info.mode = 0o755
    return info.tobuf(tarfile.USTAR_FORMAT)
data = b'hello world\\n'
with open(${JSON.stringify(archive)}, 'wb') as f:
    f.write(header('d/', 1024)); f.write(header('d/f.txt', len(data))); f.write(data.ljust(512, b'\\0')); f.write(bytes(1024))`,
    ]);
    const [ours, reference] = [fresh('slash-size-ours'), fresh('slash-size-ref')];
    run('tar', ['-xf', archive, '-C', reference]);
    const result = await extractArchive(createReadStream(archive), ours);
    assert.equal(result.files, 1);
    assert.equal(readFileSync(`${ours}/d/f.txt`, 'utf8'), 'hello world\n');
    assert.equal(diffTrees(ours, reference), '');
  });

  it('entries after the end-of-archive marker (cat a.tar b.tar) are not extracted, as tar -x leaves them', async () => {
    const [a, b, joined] = [tmp.join('a.tar'), tmp.join('b.tar'), tmp.join('joined.tar')];
    pythonTar(a, `add('first.txt', data=b'1')`);
    pythonTar(b, `add('hidden.txt', data=b'2')`);
    sh(`cat '${a}' '${b}' > '${joined}'`);
    const [ours, reference] = [fresh('joined-ours'), fresh('joined-ref')];
    run('tar', ['-xf', joined, '-C', reference]);
    const result = await extractArchive(createReadStream(joined), ours);
    assert.equal(result.files, 1);
    assert.equal(existsSync(`${ours}/hidden.txt`), false);
    assert.equal(diffTrees(ours, reference), '');
  });

  it('symlink loops stay inside and are extracted like tar -x does', async () => {
    const archive = tmp.join('loop.tar');
    pythonTar(archive, `add('a', 'SYMTYPE', linkname='b')\nadd('b', 'SYMTYPE', linkname='a')\nadd('self', 'SYMTYPE', linkname='self/x')`);
    const [ours, reference] = [fresh('loop-ours'), fresh('loop-ref')];
    run('tar', ['-xf', archive, '-C', reference]);
    const result = await extractArchive(createReadStream(archive), ours);
    assert.equal(result.links, 3);
    assert.deepEqual(treeListing(ours).map((l) => l.split(' ').slice(0, 4).join(' ')), treeListing(reference).map((l) => l.split(' ').slice(0, 4).join(' ')));
  });

  it('a hard link to a symlink is a symlink with the same text, checked from its own directory', async () => {
    const ok = tmp.join('hl-symlink.tar');
    pythonTar(ok, `add('target.txt', data=b't')\nadd('s', 'SYMTYPE', linkname='target.txt')\nadd('hl', 'LNKTYPE', linkname='s')`);
    const out = fresh('hl-symlink');
    const result = await extractArchive(createReadStream(ok), out);
    assert.equal(result.links, 2);
    assert.ok(lstatSync(`${out}/hl`).isSymbolicLink());
    assert.equal(readlinkSync(`${out}/hl`), 'target.txt');

    const evil = tmp.join('hl-symlink-evil.tar');
    pythonTar(evil, `add('a', 'DIRTYPE')\nadd('a/s', 'SYMTYPE', linkname='../t.txt')\nadd('hl', 'LNKTYPE', linkname='a/s')`);
    const target = fresh('hl-symlink-evil');
    const err = await failure(extractArchive(createReadStream(evil), target));
    assert.match(err.message, /^archive entry "hl": symlink target "..\/t.txt" points outside the target directory/);
    assert.deepEqual(treeListing(target), []);

    const missing = tmp.join('hl-missing.tar');
    pythonTar(missing, `add('hl', 'LNKTYPE', linkname='no/such/file')`);
    const empty = fresh('hl-missing');
    const missingErr = await failure(extractArchive(createReadStream(missing), empty));
    assert.equal(missingErr.message, 'archive entry "hl": hard link target "no/such/file" does not exist in the archive');
    assert.deepEqual(treeListing(empty), [], 'no parent directories made for a missing link target');
  });

  it('a GNU sparse map that reaches past the real size is refused', async () => {
    const src = fresh('badmap-src');
    sh(`cd '${src}' && truncate -s 1M few.img && printf x | dd of=few.img bs=1 seek=600000 conv=notrunc status=none`);
    const archive = tmp.join('badmap.tar');
    run('tar', ['--format=gnu', '--sparse', '-cf', archive, '-C', src, 'few.img']);
    // Shrink the real size field (offset 483) to 4096 and fix the header checksum.
    run('python3', ['-c', `
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
assert b[156:157] == b'S'
b[483:495] = b'00000010000\\0'
b[148:156] = b'        '
b[148:156] = b'%06o\\0 ' % sum(b[0:512])
open(p, 'wb').write(b)`, archive]);
    const out = fresh('badmap');
    const err = await failure(extractArchive(createReadStream(archive), out));
    assert.equal(err.category, 'bad-input');
    assert.match(err.message, /^archive entry "few.img": invalid GNU sparse file: map reaches byte \d+, past the real size 4096$/);
    assert.deepEqual(treeListing(out), []);
  });

  it('a GNU sparse extension block that is not a map is refused by name', async () => {
    const src = fresh('badext-src');
    sh(`cd '${src}' && truncate -s 2M many.img && for i in $(seq 0 9); do printf x | dd of=many.img bs=1 seek=$((i*200000)) conv=notrunc status=none; done`);
    const archive = tmp.join('badext.tar');
    run('tar', ['--format=gnu', '--sparse', '-cf', archive, '-C', src, 'many.img']);
    run('python3', ['-c', `
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
assert b[156:157] == b'S' and b[482] == 1
b[512:524] = b'zzzzzzzzzzzz'
open(p, 'wb').write(b)`, archive]);
    const out = fresh('badext');
    const err = await failure(extractArchive(createReadStream(archive), out));
    assert.equal(err.message, 'archive entry "many.img": unreadable GNU sparse header');
    assert.deepEqual(treeListing(out), []);
  });

  for (const format of ['gnu', 'pax']) {
    it(`a sparse file with a 150-character name (${format} --sparse: long-name header before the sparse one)`, async () => {
      const src = fresh('long-sparse-src');
      const name = 's'.repeat(150);
      sh(`cd '${src}' && truncate -s 3M ${name} && printf x | dd of=${name} bs=1 seek=2000000 conv=notrunc status=none`);
      const archive = tmp.join(`long-sparse-${format}.tar`);
      run('tar', [`--format=${format}`, '--sparse', '-cf', archive, '-C', src, '.']);
      const [ours, reference] = [fresh('long-sparse-ours'), fresh('long-sparse-ref')];
      run('tar', ['-xf', archive, '-C', reference]);
      await extractArchive(createReadStream(archive), ours);
      assert.equal(diffTrees(ours, reference), '');
      assert.deepEqual(treeListing(ours), treeListing(reference));
    });
  }

  it('a GNU incremental archive (directories as dumpdir entries) extracts like tar -x', async () => {
    const src = fresh('incremental-src');
    sh(`cd '${src}' && mkdir -p a/b && printf 1 > a/one && printf 2 > a/b/two`);
    const archive = tmp.join('incremental.tar');
    run('tar', [`--listed-incremental=${tmp.join('snapshot')}`, '-cf', archive, '-C', src, '.']);
    const [ours, reference] = [fresh('incremental-ours'), fresh('incremental-ref')];
    run('tar', ['-xf', archive, '-C', reference]);
    const result = await extractArchive(createReadStream(archive), ours);
    assert.deepEqual(result.skipped, []);
    assert.equal(diffTrees(ours, reference), '');
    assert.deepEqual(treeListing(ours), treeListing(reference));
  });

  it('cancelling mid-archive removes what was extracted', async () => {
    const archive = tmp.join('cancel.tar');
    pythonTar(archive, `add('first.txt', data=b'1' * 1000)\nadd('second.bin', data=b'2' * 100000)`);
    const bytes = readFileSync(archive);
    const feed = new PassThrough();
    feed.write(bytes.subarray(0, 4096)); // all of first.txt and the start of second.bin
    const controller = new AbortController();
    const out = fresh('cancel');
    writeFileSync(`${out}/mine.txt`, 'mine');
    const before = treeListing(out);
    const extraction = extractArchive(feed, out, { signal: controller.signal });
    // Cancel only once the first file is really on disk, so the rollback has something to undo.
    while (!existsSync(`${out}/first.txt`)) await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort();
    const err = await failure(extraction);
    assert.equal(err.category, 'cancelled');
    assert.deepEqual(treeListing(out), before);
  });
});
