/**
 * Deflate clusters decoded in native code (native/file-copy's inflateClusters: runs of clusters by
 * the random-access driver, single ones by the one-pass driver) against Node's zlib path
 * (inflateCluster, used where the module is missing): for valid clusters, trailing sector bytes,
 * data that inflates past the cluster or short of it, and bytes that are not deflate, both give
 * the same bytes, the same input length taken, or the same one line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { decompressCluster, inflateCluster, inflateClustersNatively, type ClusterPiece } from '../../src/qcow2/decompress-cluster.js';

const CLUSTER = 64 << 10;

/** qemu's compression: raw deflate with a 4 KiB window. */
const deflate = (data: Buffer) => deflateRawSync(data, { windowBits: 12 });

/** Half random, half text: compresses, but not to nothing. */
function clusterData(size = CLUSTER): Buffer {
  const data = Buffer.alloc(size, 'the quick brown fox jumps over the lazy dog; ');
  randomBytes(size / 2).copy(data, size / 4);
  return data;
}

async function viaNode(input: Buffer, hostOffset: number): Promise<Buffer | string> {
  return inflateCluster(input, CLUSTER, hostOffset).then(
    (cluster) => cluster.data,
    (err: Error) => err.message,
  );
}

async function viaNative(inputs: Buffer[], hostOffsets: number[]): Promise<Buffer | string> {
  const input = Buffer.concat(inputs);
  let from = 0;
  const pieces: ClusterPiece[] = inputs.map((part, i) => {
    const piece = { from, length: part.length, hostOffset: hostOffsets[i]! };
    from += part.length;
    return piece;
  });
  const output = Buffer.alloc(inputs.length * CLUSTER);
  const decoded = inflateClustersNatively(input, pieces, CLUSTER, output);
  assert.ok(decoded, 'the native module is built here');
  return decoded.then(
    () => output,
    (err: Error) => err.message,
  );
}

test('valid clusters, with and without the trailing bytes of their last sector: the same bytes', async () => {
  const clusters = [clusterData(), clusterData(), Buffer.alloc(CLUSTER)];
  const inputs = clusters.map((data, i) => (i === 1 ? Buffer.concat([deflate(data), randomBytes(300)]) : deflate(data)));
  const native = await viaNative(inputs, [0x10000, 0x20000, 0x30000]);
  assert.ok(Buffer.isBuffer(native), String(native));
  assert.ok(native.equals(Buffer.concat(clusters)), 'native output differs from the clusters');
  for (const [i, input] of inputs.entries()) {
    const node = await viaNode(input, 0x10000 * (i + 1));
    assert.ok(Buffer.isBuffer(node) && node.equals(clusters[i]!), `Node's path, cluster ${i}`);
  }
});

const failures: { name: string; input: () => Buffer; message: RegExp }[] = [
  { name: 'inflates past the cluster', input: () => deflate(clusterData(2 * CLUSTER)), message: /inflates past the 65536-byte cluster: the image is corrupt or hostile$/ },
  { name: 'inflates short of the cluster', input: () => deflate(clusterData(CLUSTER / 2)), message: /inflates to 32768 bytes instead of 65536: the image is corrupt or truncated$/ },
  { name: 'cut short', input: () => deflate(clusterData()).subarray(0, 1000), message: /inflates to \d+ bytes instead of 65536/ },
  { name: 'not deflate', input: () => Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x11, 0x22]), message: /is not valid deflate data \(invalid block type\): the image is corrupt$/ },
];

test('one cluster with trailing bytes: the native path says where its deflate data ended, as Node does', async () => {
  const compressed = deflate(clusterData());
  const input = Buffer.concat([compressed, randomBytes(333)]);
  const native = await decompressCluster('zlib', input, CLUSTER, 0x60000);
  const node = await inflateCluster(input, CLUSTER, 0x60000);
  assert.ok(native.data.equals(node.data));
  assert.equal(native.consumed, compressed.length);
  assert.equal(node.consumed, compressed.length);
});

for (const failure of failures) {
  test(`a cluster that ${failure.name}: the same line from both paths, naming its host offset`, async () => {
    const bad = failure.input();
    const node = await viaNode(bad, 0x50000);
    // The bad cluster second in its run: the line names it, not the good one before it.
    const native = await viaNative([deflate(clusterData()), bad], [0x40000, 0x50000]);
    assert.equal(typeof native, 'string', 'the native path accepted it');
    assert.equal(native, node);
    assert.match(native as string, new RegExp(`^qcow2 compressed cluster at host offset 0x50000 ${failure.message.source}`));
  });
}
