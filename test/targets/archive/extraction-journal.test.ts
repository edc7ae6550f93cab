/** The rollback puts a pre-existing directory's times back exactly, not rounded to the next second. */
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { ExtractionJournal } from '../../../src/targets/archive/extraction-journal.js';
import { makeTempDir } from '../../support/tools.js';

test('a rollback restores a pre-existing directory\'s times to the second and below (x.9996 s stayed x, not x+1)', () => {
  const tmp = makeTempDir();
  try {
    const dir = tmp.join('pre-existing');
    mkdirSync(dir);
    // Node's Stats dates round to the millisecond: 0.9996 s into a second became the next second.
    utimesSync(dir, 1795835495.9996, 1795835495.9996);
    const before = lstatSync(dir);
    const journal = new ExtractionJournal(tmp.path);
    journal.rememberDirectoryTimes(dir, before);
    writeFileSync(`${dir}/added.txt`, 'z');
    journal.record(`${dir}/added.txt`, 'other');
    assert.deepEqual(journal.rollBack(), []);
    const after = lstatSync(dir);
    assert.equal(Math.floor(after.mtimeMs / 1000), 1795835495);
    assert.ok(Math.abs(after.mtimeMs - before.mtimeMs) < 0.01, `${after.mtimeMs} vs ${before.mtimeMs}`);
    assert.ok(Math.abs(after.atimeMs - before.atimeMs) < 0.01);
  } finally {
    tmp.remove();
  }
});
