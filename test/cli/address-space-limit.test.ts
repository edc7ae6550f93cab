/**
 * Under an address-space limit (`ulimit -v`, 1 GiB) an import of a compressed raw image completes:
 * glibc gave every allocating thread (the pool, the decoders) an arena of its own reserving 64 MiB
 * of address space, and V8 then could not commit its heap and aborted with a native stack trace,
 * leaving a .partial file. qemu-img and xz run under the same limit.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { buildLauncher } from '../support/launcher.js';
import { makeTempDir, qemuRawSha256, sh, sha256File } from '../support/tools.js';

const dir = makeTempDir();
after(() => dir.remove());

test('ulimit -v 1 GiB: a 200 MiB raw.gz and raw.xz import, byte-exact, nothing left behind', async () => {
  mkdirSync(dir.join('launcher'));
  const launcher = await buildLauncher(dir.join('launcher'));
  sh(`head -c ${200 << 20} /dev/urandom > ${dir.join('disk.raw')} && gzip -1 -c ${dir.join('disk.raw')} > ${dir.join('disk.raw.gz')} && xz -T2 -0 -c ${dir.join('disk.raw')} > ${dir.join('disk.raw.xz')}`);
  const expected = await qemuRawSha256(dir.join('disk.raw'), dir.path);
  mkdirSync(dir.join('out'));
  for (const name of ['disk.raw.gz', 'disk.raw.xz', 'disk.raw.gz']) {
    const out = dir.join('out', 'disk.img');
    // The real launcher (tsx itself does not start under this limit).
    const result = spawnSync('bash', ['-c', `ulimit -v 1048576 && exec '${process.execPath}' '${launcher}' convert '${dir.join(name)}' '${out}' -q`], { encoding: 'utf8' });
    assert.equal(result.status, 0, `${name}: ${result.stderr.slice(0, 400)}`);
    assert.equal(await sha256File(out), expected, name);
    assert.deepEqual(readdirSync(dir.join('out')), ['disk.img'], name);
  }
});
