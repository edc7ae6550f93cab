/**
 * The pass in front of tar-stream must not care how the bytes are cut: the same archives fed
 * in tiny, odd-sized pieces (splitting headers, sparse extension blocks and PAX records) must
 * extract exactly like `tar -x`.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { extractArchive } from '../../../src/targets/archive/index.js';
import { diffTrees, treeListing } from '../../support/tar-fixtures.js';
import { makeTempDir, run, sh, type TempDir } from '../../support/tools.js';

/** Yields `data` in pieces of pseudo-random sizes from 1 to `max` bytes (seeded, so failures repeat). */
function* pieces(data: Buffer, max: number, seed: number): Generator<Buffer> {
  let state = seed;
  for (let at = 0; at < data.length; ) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (state % max);
    yield data.subarray(at, at + n);
    at += n;
  }
}

describe('tar prepass: any chunking', () => {
  let tmp: TempDir;
  before(() => {
    tmp = makeTempDir('cdi-prepass-');
    const src = tmp.join('src');
    mkdirSync(src);
    sh(`cd '${src}' && truncate -s 4M many.img && for i in $(seq 0 30); do printf "seg$i" | dd of=many.img bs=1 seek=$((i*120000+3)) conv=notrunc status=none; done
        printf hello > '${'n'.repeat(130)}' && ln -s '${'n'.repeat(130)}' '${'l'.repeat(110)}' && mkdir d && printf x > d/x`);
  });
  after(() => tmp.remove());

  for (const [label, args] of [
    ['GNU --sparse with extension blocks and long names', ['--format=gnu', '--sparse']],
    ['PAX --sparse 1.0 with long names', ['--format=pax', '--sparse']],
    ['PAX sparse 0.0', ['--format=pax', '--sparse', '--sparse-version=0.0']],
  ] as Array<[string, string[]]>) {
    for (const max of [7, 700]) {
      it(`${label}, pieces of 1..${max} bytes`, async () => {
        const archive = tmp.join(`a-${label.length}-${max}.tar`);
        run('tar', [...args, '-cf', archive, '-C', tmp.join('src'), '.']);
        const ours = tmp.join(`ours-${label.length}-${max}`);
        const reference = tmp.join(`ref-${label.length}-${max}`);
        mkdirSync(ours);
        mkdirSync(reference);
        run('tar', ['-xf', archive, '-C', reference]);
        await extractArchive(Readable.from(pieces(readFileSync(archive), max, max)), ours);
        assert.equal(diffTrees(ours, reference), '');
        assert.deepEqual(treeListing(ours), treeListing(reference));
      });
    }
  }
});
