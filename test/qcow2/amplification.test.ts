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
import { makeTempDir, sha256File, type TempDir } from '../support/tools.js';
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

  it('read by random access, L1 entries sharing an L2 table read it once, and the output is qemu-img\'s', async () => {
    // 512-byte clusters: 2048 L1 entries, each naming the one table (all zero-flagged entries).
    const file = tmp.join('shared-l2-random.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', file, '64M');
    qemuIo(file, 'write -z 0 512');
    const { l1Offset, l1Size, fileSize } = layout(file);
    assert.equal(l1Size, 2048);
    const entry = l1Entry(file, 0);
    for (let i = 1; i < l1Size; i++) writeAt(file, l1Offset + i * 8, u64(entry));
    const out = tmp.join('shared-l2-random.raw');
    const result = await runCli(['convert', file, out, '--json']);
    assert.equal(result.code, 0, result.stderr);
    // One 512-byte read per entry would be 1 MiB; the file is a few KiB.
    assert.ok(JSON.parse(result.stdout).sourceBytes <= fileSize, result.stdout);
    const reference = tmp.join('shared-l2-random.ref');
    qemuImg('convert', '-O', 'raw', file, reference);
    assert.equal(await sha256File(out), await sha256File(reference));
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

  it('every L2 entry a compressed cluster claiming the same 4 MiB: refused before the copies add up (peak RSS bounded)', async () => {
    // 2 MiB clusters, the largest claim (8192 sectors): 256 guest clusters would be 1 GiB of copies of one range.
    const file = tmp.join('shared-compressed.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', file, '512M');
    qemuIo(file, 'write -c -P 0x11 0 2M');
    const table = l2TableOffsetOf(file, 0);
    const first = readAt(file, table, 8).readBigUInt64BE(0);
    const x = 62n - (21n - 8n);
    const hostOffset = first & ((1n << x) - 1n);
    const entries = Buffer.alloc(256 * 8);
    for (let i = 0; i < 256; i++) entries.writeBigUInt64BE((1n << 62n) | (8191n << x) | hostOffset, i * 8);
    writeAt(file, table, entries);
    const xz = xzCompress(file);
    const result = await runCli(['convert', xz, tmp.join('shared-compressed.raw')], { wrap: ['/usr/bin/time', '-f', 'peak-rss-kib %M'] });
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^cdi-importer: error: \S+shared-compressed\.qcow2\.xz: qcow2 compressed clusters claim the same host bytes over and over .*the image is corrupt/);
    const peakMiB = Number(/peak-rss-kib (\d+)/.exec(result.stderr)![1]) / 1024;
    assert.ok(peakMiB < 400, `peak RSS ${peakMiB} MiB`);
    assert.equal(existsSync(tmp.join('shared-compressed.raw')), false);
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
