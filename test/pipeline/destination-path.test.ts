/**
 * Replacing an existing file by renaming a new one over it: in a sticky directory (as /tmp) only
 * the file's owner, the directory's owner or root may, so another user's file there is refused
 * before the import instead of failing at the final rename.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { inspectDestination, refuseStickyReplace } from '../../src/pipeline/destination-path.js';
import { makeTempDir } from '../support/tools.js';

const dir = makeTempDir();
after(() => dir.remove());

test("another user's file in a sticky directory is refused, in words; its owner, root, or a plain directory are fine", async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to give the file another owner');
  const sticky = dir.join('sticky');
  mkdirSync(sticky);
  chmodSync(sticky, 0o1777);
  const file = `${sticky}/disk.img`;
  writeFileSync(file, 'old disk');
  chmodSync(file, 0o666);
  chownSync(file, 4242, 4242);
  const destination = await inspectDestination(file);
  assert.equal(destination.kind, 'file');
  if (destination.kind !== 'file') return;
  await assert.rejects(
    (async () => refuseStickyReplace(destination, statSync(sticky), 'sticky/disk.img', 1000))(),
    (err: Error & { category?: string }) =>
      err.category === 'target' &&
      err.message === `sticky/disk.img belongs to another user (uid 4242) in ${sticky}, a directory with the sticky bit, where only its owner can replace it: give another file name, or have its owner remove it`,
  );
  refuseStickyReplace(destination, statSync(sticky), file, 4242); // the file's owner
  refuseStickyReplace(destination, statSync(sticky), file, 0); // root
  chmodSync(sticky, 0o777);
  refuseStickyReplace(destination, statSync(sticky), file, 1000); // no sticky bit: the directory's write permission is enough
});
