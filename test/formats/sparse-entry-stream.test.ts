/**
 * A sparse tar entry read back as its whole file: data where the map puts it, zeros between, and
 * a huge hole handed out a slice at a time with turns of the event loop between, so a signal or
 * a metrics request is not kept waiting for the whole hole.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { sparseEntryStream } from '../../src/formats/tar/sparse-entry-stream.js';
import type { FileLayout } from '../../src/formats/tar/sparse-layout.js';

const MiB = 1 << 20;
const bad = (why: string) => new Error(why);

test('data lands at its segments, zeros fill the holes, the length is the real size', async () => {
  const layout: FileLayout = { name: 'disk', realSize: 10, segments: [{ offset: 2, length: 3 }, { offset: 7, length: 1 }], mapInData: false };
  const stream = sparseEntryStream(Readable.from([Buffer.from('abc'), Buffer.from('d')]), layout, 4, bad);
  const out: Buffer[] = [];
  for await (const chunk of stream) out.push(chunk as Buffer);
  assert.deepEqual(Buffer.concat(out), Buffer.from([0, 0, 0x61, 0x62, 0x63, 0, 0, 0x64, 0, 0]));
});

test('a 64 GiB hole: timers still run while it streams', async () => {
  const layout: FileLayout = { name: 'disk', realSize: 64 * 1024 * MiB, segments: [{ offset: 0, length: 1 }], mapInData: false };
  const stream = sparseEntryStream(Readable.from([Buffer.from('x')]), layout, 1, bad);
  let timerRan = false;
  setTimeout(() => (timerRan = true), 1);
  let bytes = 0;
  for await (const chunk of stream) {
    bytes += (chunk as Buffer).length;
    if (bytes >= 2048 * MiB) break;
  }
  stream.destroy();
  assert.ok(timerRan, 'a timer due during the first 2 GiB of hole ran before they were through');
});
