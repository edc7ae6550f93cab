/**
 * Images that map a huge disk with a few bytes, read in one pass (a .qcow2.xz, stdin, HTTP
 * without Range): the one-pass driver would hold one record per guest cluster until the data
 * came. Shared L2 tables and shared data clusters (which qemu never writes in one layer) are
 * refused as corrupt, and however the mappings are made, the number waiting is capped, so
 * memory stays bounded and the failure is one line.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { runCli } from '../support/cli.js';
import { makeTempDir, type TempDir } from '../support/tools.js';
import { qemuImg, qemuIo, xzCompress } from './images.js';
import { layout, l1Entry, l2TableOffsetOf, readAt, u64, writeAt } from './patch.js';

describe('one-pass qcow2: mappings without data behind them', () => {
  let tmp: TempDir;
  before(() => (tmp = makeTempDir('cdi-qcow2-amp-')));
  after(() => tmp.remove());

  /** A 64 GiB image whose first cluster is written: L1[0] → one L2 table → one data cluster. */
  function oneClusterImage(name: string): string {
    const file = tmp.join(name);
    qemuImg('create', '-q', '-f', 'qcow2', file, '64G');
    qemuIo(file, 'write -P 0xab 0 64k');
    return file;
  }

  async function importInOnePass(file: string) {
    const out = tmp.join('out.img');
    const result = await runCli(['convert', xzCompress(file), out]);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
    assert.equal(existsSync(out), false, 'nothing left behind');
    return result.stderr;
  }

  it('every L1 entry on one L2 table: refused as corrupt', async () => {
    const file = oneClusterImage('shared-l2.qcow2');
    const { l1Offset, l1Size } = layout(file);
    const entry = l1Entry(file, 0);
    for (let i = 1; i < l1Size; i++) writeAt(file, l1Offset + i * 8, u64(entry));
    assert.match(await importInOnePass(file), /qcow2 L1 entries 0 and 1 point to the same L2 table at 0x[0-9a-f]+: the image is corrupt/);
  });

  it('every L2 entry on one data cluster: refused as corrupt', async () => {
    const file = oneClusterImage('shared-data.qcow2');
    const { clusterSize } = layout(file);
    const table = l2TableOffsetOf(file, 0);
    const entry = readAt(file, table, 8);
    const entries = Buffer.alloc(clusterSize);
    for (let at = 0; at < clusterSize; at += 8) entry.copy(entries, at);
    writeAt(file, table, entries);
    assert.match(await importInOnePass(file), /qcow2 host cluster 0x[0-9a-f]+ holds the data of guest offsets 0 and 65536: .* the image is corrupt/);
  });

  it('a valid image with four million empty L1 entries converts in one pass within a 64 MiB heap', async () => {
    // 512-byte clusters: a 127 GiB image has an L1 table of ~4 Mi entries, all empty but one.
    const file = tmp.join('big-l1.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', file, '127G');
    qemuIo(file, 'write -P 0x5a 100G 512');
    assert.ok(layout(file).l1Size > 4_000_000);
    const out = tmp.join('big-l1.raw');
    const result = await runCli(['convert', xzCompress(file), out, '-q'], { env: { NODE_OPTIONS: '--max-old-space-size=64' } });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(statSync(out).size, 127 * 2 ** 30);
    assert.ok(statSync(out).blocks * 512 <= 64 * 1024, 'sparse');
    const handle = openSync(out, 'r');
    const data = Buffer.alloc(1024);
    readSync(handle, data, 0, 1024, 100 * 2 ** 30 - 256);
    closeSync(handle);
    assert.ok(data.subarray(0, 256).every((b) => b === 0) && data.subarray(256, 768).every((b) => b === 0x5a) && data.subarray(768).every((b) => b === 0));
  });

  it('two million distinct clusters mapped ahead of their data: stops at the cap with one line', async () => {
    const file = tmp.join('mapped-ahead.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, '128G');
    const { clusterSize, l1Offset, l1Size, fileSize } = layout(file);
    // Each L1 entry gets its own L2 table at the end of the file, mapping clusters that never come.
    const firstTable = Math.ceil(fileSize / clusterSize) * clusterSize;
    const perTable = clusterSize / 8;
    let next = firstTable + l1Size * clusterSize;
    for (let i = 0; i < l1Size; i++) {
      const table = Buffer.alloc(clusterSize);
      for (let j = 0; j < perTable; j++, next += clusterSize) table.writeBigUInt64BE(BigInt(next) | (1n << 63n), j * 8);
      writeAt(file, firstTable + i * clusterSize, table);
      writeAt(file, l1Offset + i * 8, u64(BigInt(firstTable + i * clusterSize) | (1n << 63n)));
    }
    assert.equal(l1Size * perTable, 2 * 1024 * 1024);
    assert.match(await importInOnePass(file), /qcow2 image maps more than 1048576 clusters ahead of their data .*: .* import it from a seekable source/);
  });
});
