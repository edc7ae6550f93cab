/**
 * Pod mode on a block volume: `<root>/dev/cdi-block-volume` is a device node for a loop device
 * (as Kubernetes creates it for a block PVC). Its old contents are a byte pattern, so the tests
 * see what was written and what was left alone.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { startNginx, type NginxServer } from '../support/nginx.js';
import { makeTempDir, qemuRawSha256, run, sh, type TempDir } from '../support/tools.js';
import { makePodRoot, runPod, sha256OfRange, type PodRoot } from './pod-harness.js';

const MiB = 1 << 20;
const DEVICE_SIZE = 32 * MiB;

function patternSha(length: number): string {
  return sh(`head -c ${length} /dev/zero | tr '\\0' '\\253' | sha256sum`).split(' ')[0]!;
}

describe('pod mode, block volume', { skip: process.getuid?.() !== 0 ? 'needs root for losetup' : false }, () => {
  let images: TempDir;
  let nginx: NginxServer;
  const roots: PodRoot[] = [];
  const loops: string[] = [];

  /** A pod root whose dev/cdi-block-volume is a fresh loop device filled with 0xAB. */
  function blockPodRoot(): { root: PodRoot; device: string } {
    const root = makePodRoot();
    roots.push(root);
    const backing = root.join('backing.img');
    sh(`head -c ${DEVICE_SIZE} /dev/zero | tr '\\0' '\\253' > ${backing}`);
    const device = run('losetup', ['-f', '--show', backing]).trim();
    loops.push(device);
    const [major, minor] = run('stat', ['-c', '%t %T', device]).trim().split(' ').map((hex) => parseInt(hex, 16));
    run('mknod', [root.blockDevice, 'b', String(major), String(minor)]);
    return { root, device };
  }

  before(async () => {
    images = makeTempDir('cdi-pod-block-');
    makeDiskLikeImage(images.join('raw.img'), 8 * MiB);
    writeFileSync(images.join('archive.tar'), Buffer.alloc(10240));
    nginx = await startNginx({ root: images.path });
  });

  after(async () => {
    for (const loop of loops) run('losetup', ['-d', loop]);
    await nginx?.stop();
    for (const root of roots) root.remove();
    images?.remove();
  });

  test('http raw onto the device: the image bytes, zeros included, and nothing past its end', async () => {
    const { root, device } = blockPodRoot();
    const result = await runPod(root, { IMPORTER_SOURCE: 'http', IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_IMAGE_SIZE: '32Mi', PREALLOCATION: 'false' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.json?.message, 'Import Complete');
    assert.equal(sha256OfRange(device, 0, 8 * MiB), await qemuRawSha256(images.join('raw.img'), images.path));
    // Block volumes are not resized: the rest of the device keeps what it had.
    assert.equal(sha256OfRange(device, 8 * MiB, DEVICE_SIZE - 8 * MiB), patternSha(DEVICE_SIZE - 8 * MiB));
  });

  test('blank without preallocation: the device is used as it is', async () => {
    const { root, device } = blockPodRoot();
    const result = await runPod(root, { IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '32Mi', PREALLOCATION: 'false' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.message, '{"message":"Import Complete","preallocationApplied":false}');
    assert.equal(sha256OfRange(device, 0, DEVICE_SIZE), patternSha(DEVICE_SIZE));
  });

  test('blank with preallocation: the whole device is zeroed, as CDI does', async () => {
    const { root, device } = blockPodRoot();
    const result = await runPod(root, { IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '32Mi', PREALLOCATION: 'true' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.message, '{"message":"Import Complete","preallocationApplied":true}');
    assert.equal(sha256OfRange(device, 0, DEVICE_SIZE), sh(`head -c ${DEVICE_SIZE} /dev/zero | sha256sum`).split(' ')[0]);
  });

  test('archive content on a block volume: exit 1, "ContentType Archive cannot have block volumeMode"', async () => {
    const { root, device } = blockPodRoot();
    const result = await runPod(root, {
      IMPORTER_SOURCE: 'http',
      IMPORTER_ENDPOINT: `${nginx.http}archive.tar`,
      IMPORTER_CONTENTTYPE: 'archive',
      PREALLOCATION: 'false',
    });
    assert.equal(result.code, 1);
    assert.match(result.message!, /ContentType Archive cannot have block volumeMode/);
    assert.equal(sha256OfRange(device, 0, DEVICE_SIZE), patternSha(DEVICE_SIZE));
  });
});
