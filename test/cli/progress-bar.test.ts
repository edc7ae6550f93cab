/** The terminal progress line: sizes a pseudo-terminal may report, and the first moments' rate. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProgressBar } from '../../src/cli/progress-bar.js';

function fakeTerminal(columns: number | undefined) {
  const frames: string[] = [];
  const out = { columns, write: (text: string) => frames.push(text) } as unknown as NodeJS.WriteStream;
  return { out, frames };
}

test('a terminal that reports 0 columns (never sized) gets the whole line, not one cut at -1', () => {
  const { out, frames } = fakeTerminal(0);
  new ProgressBar(out).update({ bytes: 1 << 20, total: 40 << 20 });
  assert.match(frames[0]!, /ETA --:--\s*$/);
});

test('no ETA in the first second: the rate of a header read says nothing of the rest', () => {
  const { out, frames } = fakeTerminal(120);
  new ProgressBar(out).update({ bytes: 112, total: 400 << 20 });
  assert.match(frames[0]!, /ETA --:--/);
});
