/** Archives made by GNU tar, extracted by us and by `tar -x`: the trees must match. */
import assert from 'node:assert/strict';
import { createReadStream, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { extractArchive } from '../../../src/targets/archive/index.js';
import { buildSampleTree, diffTrees, gnuTar, treeListing, type TarFormat } from '../../support/tar-fixtures.js';
import { allocatedBytes, makeTempDir, run, sh, type TempDir } from '../../support/tools.js';

describe('extractArchive matches tar -x', () => {
  let tmp: TempDir;
  let counter = 0;
  before(() => {
    tmp = makeTempDir('cdi-archive-');
  });
  after(() => tmp.remove());

  /** Extracts `archive` with us and with GNU tar; returns both directories. */
  async function extractBoth(archive: string) {
    const n = counter++;
    const ours = tmp.join(`ours-${n}`);
    const reference = tmp.join(`tar-${n}`);
    mkdirSync(ours);
    mkdirSync(reference);
    run('tar', ['-xf', archive, '-C', reference]);
    const result = await extractArchive(createReadStream(archive), ours);
    assert.equal(diffTrees(ours, reference), '');
    assert.deepEqual(treeListing(ours), treeListing(reference));
    return { ours, reference, result };
  }

  for (const format of ['ustar', 'gnu', 'pax'] as TarFormat[]) {
    it(`a ${format} archive of a tree with links, modes, long names, empty directories`, async () => {
      const src = tmp.join(`src-${format}`);
      mkdirSync(src);
      buildSampleTree(src, { longFileName: format !== 'ustar' });
      const archive = tmp.join(`sample.${format}.tar`);
      gnuTar(src, archive, format);
      const { ours, reference, result } = await extractBoth(archive);

      assert.equal(result.links, 5, 'one hard link and four symlinks');
      assert.deepEqual(result.skipped, []);
      assert.equal(result.files, format === 'ustar' ? 7 : 8); // the 120-character file name needs gnu or pax
      // Zero runs become holes even when the archive stores them as data.
      assert.ok(allocatedBytes(`${ours}/sparse.img`) <= 64 * 1024, 'the sparse file is written sparse');
      assert.ok(allocatedBytes(`${ours}/zero-runs.bin`) < allocatedBytes(`${reference}/zero-runs.bin`));
      // We keep permission bits and sticky, but not setuid (tar -x as root keeps it; treeListing masks it).
      assert.equal(statSync(`${ours}/setuid-tool`).mode & 0o7777, 0o755);
      assert.equal(statSync(`${ours}/shared-tmp`).mode & 0o7777, 0o1777);
      assert.equal(statSync(`${ours}/ro`).mode & 0o777, 0o555);
      assert.equal(statSync(`${ours}/hard-link.txt`).ino, statSync(`${ours}/sub/hello.txt`).ino);
    });
  }

  for (const [format, extra] of [
    ['gnu', []],
    ['pax', []],
    ['ustar', []],
    ['gnu', ['--sparse']],
    ['posix', ['--sparse']], // GNU tar's PAX sparse 1.0: the name only in GNU.sparse.name
  ] as Array<[TarFormat, string[]]>) {
    it(`a ${format} ${extra.join(' ')} archive whose long paths have a "/" as their 100th byte (the header's name field ends in one)`, async () => {
      // The header's 100-byte name field holds the start of a longer path (gnu, pax) or its last
      // part (ustar's prefix split); a "/" at byte 100 made that field look like a V7 directory.
      const src = tmp.join(`slash-100-${counter}`);
      mkdirSync(src);
      const dir = `${'y'.repeat(97)}/sub`; // "./" + 97 bytes: the 100th byte of "./yyy…/sub/…" is "/"
      sh(`cd '${src}' && mkdir -p '${dir}/empty' && printf 'data\n' > '${dir}/file.txt' && printf 'more' > '${dir}/other.bin'
          truncate -s 1M '${dir}/sparse.img' && printf x | dd of='${dir}/sparse.img' bs=1 seek=70000 conv=notrunc status=none`);
      const archive = tmp.join(`slash-100-${counter}.tar`);
      gnuTar(src, archive, format, extra);
      const { result } = await extractBoth(archive);
      assert.equal(result.files, 3);
    });
  }

  for (const format of ['gnu', 'posix'] as TarFormat[]) {
    it(`${format}: times before 1970 (files, symlinks, directories) are kept, not set to the time of extraction`, async () => {
      // Found by a QA pass: Node's utimes family takes a negative number of seconds for "now".
      const src = tmp.join(`old-times-${counter}`);
      mkdirSync(src);
      sh(`cd '${src}' && mkdir d && printf x > d/f && ln -s f d/l && touch -h -d '1960-01-01 12:00:00 UTC' d/f d/l d && touch -d '1969-12-31 23:59:58 UTC' .`);
      const archive = tmp.join(`old-times-${counter}.tar`);
      gnuTar(src, archive, format);
      const { ours } = await extractBoth(archive); // the listings hold whole-second mtimes
      assert.equal(statSync(`${ours}/d/f`).mtimeMs, Date.UTC(1960, 0, 1, 12));
    });
  }

  it('names that are not UTF-8 (Latin-1) are refused, not merged into one file', async () => {
    // Found by a QA pass: tar-stream reads names as UTF-8, so "caf\xe9" and "caf\xe8" both became
    // "caf\uFFFD" and the second replaced the first without a word.
    const src = tmp.join('latin1-names');
    mkdirSync(src);
    sh(`cd '${src}' && printf A > "$(printf 'caf\\351')" && printf B > "$(printf 'caf\\350')"`);
    for (const format of ['gnu', 'posix'] as TarFormat[]) {
      const archive = tmp.join(`latin1-${format}.tar`);
      gnuTar(src, archive, format);
      const ours = tmp.join(`latin1-out-${format}`);
      mkdirSync(ours);
      await assert.rejects(extractArchive(createReadStream(archive), ours), /archive entry "\.\/caf\uFFFD": its name holds bytes that are not UTF-8 \(another character set, such as Latin-1\)/);
      assert.deepEqual(treeListing(ours), []);
    }
  });

  it('tar -r: a file and a symlink appended over empty directories of the same names replace them, as GNU tar does', async () => {
    // Found by a QA pass: the appended entries were refused ("a directory of that name already exists").
    const v1 = tmp.join('append-v1');
    const v2 = tmp.join('append-v2');
    sh(`mkdir -p '${v1}/e' '${v1}/s' '${v1}/full/inner' '${v2}/full' && chmod 700 '${v1}/e' && printf file > '${v2}/e' && ln -s e '${v2}/s'`);
    const archive = tmp.join('append.tar');
    run('tar', ['-cf', archive, '-C', v1, './e', './s']);
    run('tar', ['-rf', archive, '-C', v2, './e', './s']);
    const { ours } = await extractBoth(archive);
    assert.equal(readFileSync(`${ours}/e`, 'latin1'), 'file');
    assert.equal(statSync(`${ours}/e`).mode & 0o777, 0o644, 'the file keeps its own mode, not the directory\'s');
    // A directory that holds something is not replaced.
    writeFileSync(`${v2}/full.txt`, 'x');
    const refused = tmp.join('append-refused.tar');
    run('tar', ['-cf', refused, '-C', v1, './full']);
    sh(`cd '${v2}' && mv full full.d && mv full.txt full && tar -rf '${refused}' ./full`);
    const out = tmp.join('append-refused-out');
    mkdirSync(out);
    await assert.rejects(extractArchive(createReadStream(refused), out), /archive entry "\.\/full": a directory of that name already exists and is not empty; refusing to replace it/);
    assert.deepEqual(treeListing(out), []);
  });

  it('a Python tarfile PAX archive of 2 000-character paths', async () => {
    const archive = tmp.join('python-pax.tar');
    run('python3', [
      '-c',
      `import io, tarfile
with tarfile.open(${JSON.stringify(archive)}, 'w', format=tarfile.PAX_FORMAT) as t:
    for i in range(3):
        info = tarfile.TarInfo('/'.join(['a'] * 1000) + '/f%d' % i)
        info.size = 2
        t.addfile(info, io.BytesIO(b'x%d' % i))`,
    ]);
    // Not extractBoth: the 3 000 implicit directories get the time of extraction, which differs.
    const ours = tmp.join('python-pax-ours');
    mkdirSync(ours);
    const result = await extractArchive(createReadStream(archive), ours);
    assert.equal(result.files, 3);
    for (let i = 0; i < 3; i++) assert.equal(readFileSync(`${ours}/${'a/'.repeat(1000)}f${i}`, 'latin1'), `x${i}`);
  });

  for (const [label, format, extra] of [
    ['GNU --sparse (old GNU sparse headers)', 'gnu', ['--sparse']],
    ['PAX --sparse (sparse 1.0, map in the data)', 'pax', ['--sparse']],
    ['PAX sparse 0.0 (repeated offset/numbytes)', 'pax', ['--sparse', '--sparse-version=0.0']],
    ['PAX sparse 0.1 (GNU.sparse.map)', 'pax', ['--sparse', '--sparse-version=0.1']],
  ] as Array<[string, TarFormat, string[]]>) {
    it(`sparse files: ${label}, including one whose map needs extension blocks`, async () => {
      const src = tmp.join(`sparse-src-${counter}`);
      mkdirSync(src);
      sh(`cd '${src}' && truncate -s 6M few.img && printf x | dd of=few.img bs=1 seek=3000000 conv=notrunc status=none
          truncate -s 8M many.img && for i in $(seq 0 40); do printf "seg$i" | dd of=many.img bs=1 seek=$((i*200000+7)) conv=notrunc status=none; done
          truncate -s 1M empty-sparse.img && touch -d '2022-02-02' *.img`);
      const archive = tmp.join(`sparse-${counter}.tar`);
      gnuTar(src, archive, format, extra);
      // The archive stores only the data, so this really exercises the sparse map.
      assert.ok(statSync(archive).size < 512 * 1024, `archive is ${statSync(archive).size} bytes`);
      const { ours, result } = await extractBoth(archive);
      assert.equal(result.bytes, 6 * 2 ** 20 + 8 * 2 ** 20 + 2 ** 20);
      for (const name of ['few.img', 'many.img', 'empty-sparse.img']) {
        assert.ok(allocatedBytes(`${ours}/${name}`) <= 41 * 8192, `${name} allocates ${allocatedBytes(`${ours}/${name}`)}`);
      }
    });
  }

  it('keeps sub-second PAX mtimes and leaves a pre-existing target directory untouched', async () => {
    const src = tmp.join('pax-times');
    mkdirSync(src);
    sh(`cd '${src}' && mkdir d && printf a > d/a && touch -d '2020-05-06 07:08:09.123456' d/a d && chmod 711 .`);
    const archive = tmp.join('pax-times.tar');
    gnuTar(src, archive, 'pax');
    const ours = tmp.join('pax-times-out');
    mkdirSync(ours, { mode: 0o750 });
    await extractArchive(createReadStream(archive), ours);
    assert.equal(statSync(`${ours}/d/a`).mtimeMs, statSync(`${src}/d/a`).mtimeMs);
    assert.equal(statSync(`${ours}/d`).mtimeMs, statSync(`${src}/d`).mtimeMs);
    assert.equal(statSync(ours).mode & 0o777, 0o750, 'the "./" entry does not change the target itself');
  });

  it('stops at its entry limit before creating the entry past it, one clear line, and undoes what it made (memory stays bounded)', async () => {
    const src = tmp.join('many-entries');
    mkdirSync(`${src}/d`, { recursive: true });
    sh(`cd '${src}/d' && seq 1 40 | xargs touch`);
    const archive = tmp.join('many-entries.tar');
    gnuTar(src, archive, 'gnu');
    const ours = tmp.join('many-entries-out');
    mkdirSync(ours);
    await assert.rejects(extractArchive(createReadStream(archive), ours, { maxPaths: 25, where: 'many-entries.tar' }), (err: Error) => {
      assert.match(err.message, /the archive creates more than 25 paths \(its entries and the directories they need\), more than cdi-importer extracts .*split it into several archives/);
      return true;
    });
    assert.deepEqual(treeListing(ours), []);
    // Under the limit, the same archive extracts as tar -x does.
    const fits = tmp.join('many-entries-fits');
    mkdirSync(fits);
    await extractArchive(createReadStream(archive), fits, { maxPaths: 100 });
    assert.equal(treeListing(fits).length, 41);
  });

  it('stops when the paths it created add up to its character limit: long names count, not only many', async () => {
    const src = tmp.join('long-names');
    const long = 'n'.repeat(200);
    mkdirSync(`${src}/d`, { recursive: true });
    sh(`cd '${src}/d' && for i in $(seq 1 20); do touch "${long}-$i"; done`);
    const archive = tmp.join('long-names.tar');
    gnuTar(src, archive, 'gnu');
    const ours = tmp.join('long-names-out');
    mkdirSync(ours);
    // 20 paths of over 200 characters each; 10 fit under 2 500.
    await assert.rejects(extractArchive(createReadStream(archive), ours, { maxPathChars: 2500 }), /the paths the archive creates \(and its symlinks' targets\) add up to more than 2500 characters \(1\d paths so far;.*split it into several archives or shorten its names/);
    assert.deepEqual(treeListing(ours), []);
    // The target directory's own path does not count: the same archive fits under a long one.
    const deep = tmp.join('t'.repeat(200), 'x'.repeat(200));
    mkdirSync(deep, { recursive: true });
    await extractArchive(createReadStream(archive), deep, { maxPathChars: 5000 });
    assert.equal(treeListing(deep).length, 21);
  });

  it('symlinks, held until the end, count toward both limits with their targets', async () => {
    const src = tmp.join('long-links');
    mkdirSync(src);
    const target = `${'t'.repeat(200)}/`.repeat(5); // a 1 005-character target inside the directory
    sh(`cd '${src}' && for i in $(seq 1 20); do ln -s '${target}' "link-$i"; done`);
    const archive = tmp.join('long-links.tar');
    gnuTar(src, archive, 'gnu');
    const out = tmp.join('long-links-out');
    mkdirSync(out);
    // 20 targets of 1 005 characters: their names alone (~140 characters) fit under 5 000, the targets do not.
    await assert.rejects(extractArchive(createReadStream(archive), out, { maxPathChars: 5000 }), /the paths the archive creates \(and its symlinks' targets\) add up to more than 5000 characters \([4-6] paths so far/);
    assert.deepEqual(treeListing(out), []);
    const many = tmp.join('long-links-many');
    mkdirSync(many);
    await assert.rejects(extractArchive(createReadStream(archive), many, { maxPaths: 10 }), /the archive creates more than 10 paths/);
    assert.deepEqual(treeListing(many), []);
    const roomy = tmp.join('long-links-roomy');
    mkdirSync(roomy);
    await extractArchive(createReadStream(archive), roomy, { maxPathChars: 30_000 });
    assert.equal(treeListing(roomy).length, 20);
  });

  it('names beyond Latin-1 count twice toward the character limit (two bytes each in memory)', async () => {
    const src = tmp.join('wide-names');
    mkdirSync(`${src}/d`, { recursive: true });
    for (const letter of ['n', 'ā']) sh(`cd '${src}/d' && for i in $(seq 1 10); do touch "${letter.repeat(100)}-$i"; done`);
    const archive = tmp.join('wide-names.tar');
    gnuTar(src, archive, 'gnu');
    // 10 paths of ~105 one-byte characters and 10 of ~105 two-byte ones: ~3 200 counted, ~2 100 characters.
    const out = tmp.join('wide-names-out');
    mkdirSync(out);
    await assert.rejects(extractArchive(createReadStream(archive), out, { maxPathChars: 2800 }), /add up to more than 2800 characters .*counts them twice/);
    assert.deepEqual(treeListing(out), []);
    const roomy = tmp.join('wide-names-roomy');
    mkdirSync(roomy);
    await extractArchive(createReadStream(archive), roomy, { maxPathChars: 3400 });
    assert.equal(treeListing(roomy).length, 21);
  });
});
