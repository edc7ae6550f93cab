/**
 * A tiny loop-mounted ext2 that fills up mid-archive: the failure is one clear target error
 * and the file system is left as it was (only lost+found), so the space is free again.
 */
import assert from 'node:assert/strict';
import { createReadStream, mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { isImportError } from '../../../src/errors.js';
import { extractArchive } from '../../../src/targets/archive/index.js';
import { runCli } from '../../support/cli.js';
import { pythonTar, treeListing } from '../../support/tar-fixtures.js';
import { makeTempDir, run, sh, type TempDir } from '../../support/tools.js';

describe('a target file system that fills up mid-archive', () => {
  let tmp: TempDir;
  let mountPoint: string;
  let mounted = false;
  let freeBefore: string;
  let listingBefore: string[];

  before(() => {
    tmp = makeTempDir('cdi-archive-full-');
    run('truncate', ['-s', '4M', tmp.join('fs.img')]);
    run('mkfs.ext2', ['-q', '-F', tmp.join('fs.img')]);
    mountPoint = tmp.join('mnt');
    mkdirSync(mountPoint);
    run('mount', ['-o', 'loop', tmp.join('fs.img'), mountPoint]);
    mounted = true;
    freeBefore = run('df', ['--output=avail,iavail', mountPoint]);
    listingBefore = treeListing(mountPoint);
  });
  after(() => {
    if (mounted) run('umount', [mountPoint]); // also detaches the loop device mount made
    tmp.remove();
  });

  const assertLeftAsItWas = () => {
    assert.deepEqual(treeListing(mountPoint), listingBefore);
    assert.equal(run('df', ['--output=avail,iavail', mountPoint]), freeBefore, 'all space given back');
  };

  it('a file larger than the disk, with no size known up front: ENOSPC while writing', async () => {
    const archive = tmp.join('big.tar');
    sh(`mkdir -p '${tmp.join('big')}' && head -c 3000000 /dev/urandom > '${tmp.join('big/first.bin')}' && head -c 3000000 /dev/urandom > '${tmp.join('big/second.bin')}'`);
    run('tar', ['-cf', archive, '-C', tmp.join('big'), 'first.bin', 'second.bin']);
    const err = await extractArchive(createReadStream(archive), mountPoint).then(
      () => assert.fail('extraction succeeded on a full disk'),
      (e: unknown) => e,
    );
    assert.ok(isImportError(err));
    assert.equal(err.category, 'target');
    assert.match(err.message, new RegExp(`^no space left in ${mountPoint} while extracting archive entry "second.bin": the target is full$`));
    assertLeftAsItWas();
  });

  it('through the CLI: many small files pass the size check but run out of blocks and inodes', async () => {
    const archive = tmp.join('many.tar');
    pythonTar(archive, `for i in range(3000): add('dir%d/file%d' % (i // 100, i), data=b'%d' % i)`);
    const result = await runCli(['import', '--content-type', 'archive', archive, '-o', mountPoint]);
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, new RegExp(`^cdi-importer: error: no space left in ${mountPoint} while extracting archive entry "dir\\d+/file\\d+": the target is full\\n$`));
    assertLeftAsItWas();
  });

  it('through the CLI: an archive whose sizes exceed the free space fails before writing', async () => {
    const archive = tmp.join('big.tar');
    const result = await runCli(['import', '--content-type', 'archive', archive, '-o', mountPoint, '--json']);
    assert.equal(result.code, 1);
    const json = JSON.parse(result.stdout) as { category: string; error: string };
    assert.equal(json.category, 'too-small');
    assert.match(json.error, /archive content size 6000000 \(through entry "second.bin"\) is larger than the reported available storage \d+/);
    assertLeftAsItWas();
  });
});
