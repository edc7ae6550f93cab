/**
 * A qcow2 read by Range from a server a round trip away: table reads and data reads must overlap,
 * or each one's round trip adds up (a 16 GiB sparse image, 50 ms away: 1.3 s, curl 0.25 s).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { HttpSource } from '../../src/sources/http/index.js';
import { openQcow2RandomAccess } from '../../src/qcow2/index.js';
import { startFaultServer, type FaultServer } from '../support/fault-server.js';
import { makeTempDir, qemuRawSha256, sha256File, type TempDir } from '../support/tools.js';
import { quickTuning } from '../sources/http/helpers.js';
import { writeExtents } from './helpers.js';
import { qemuImg, qemuIo } from './images.js';

let dir: TempDir;
let server: FaultServer;
let expected: string;

before(async () => {
  dir = makeTempDir('qcow2-far-');
  // 4 KiB clusters: an L2 table per 2 MiB of disk. 64 KiB of data in each of 96 tables, zeros between.
  const image = dir.join('sparse.qcow2');
  qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', image, '192M');
  qemuIo(image, ...Array.from({ length: 96 }, (_, i) => `write -P ${(i % 250) + 1} ${i * 2}M 64K`));
  expected = await qemuRawSha256(image, dir.path);
  server = await startFaultServer(readFileSync(image));
});
after(async () => {
  await server?.stop();
  dir?.remove();
});

describe('qcow2 by Range from a server a round trip away', () => {
  it('keeps table and data reads in flight together, zero runs between them notwithstanding', async () => {
    // Every answer comes 20 ms after its request.
    const source = new HttpSource(`${server.url}slow-answer?ms=20&times=1000000`, {}, quickTuning);
    const opened = await source.open(new AbortController().signal);
    opened.stream.destroy();
    assert.ok(opened.randomAccess, 'the server honours Range');
    const image = await openQcow2RandomAccess(opened.randomAccess);
    const out = dir.join('out.raw');
    await writeExtents(image, out);
    await opened.randomAccess.close();
    assert.equal(await sha256File(out), expected);
    // Eight reads in flight and tables read ahead; one table ahead and zero runs taking read
    // slots kept it to about five.
    assert.ok(server.maxConcurrent() >= 8, `at most ${server.maxConcurrent()} requests at once`);
  });
});
