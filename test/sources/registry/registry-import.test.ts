/**
 * Registry imports end to end: a real docker-registry on 127.0.0.1, images pushed by skopeo, each
 * import through the CLI, every result checked against qemu-img's conversion of the original disk.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makePodRoot, runPod } from '../../pod/pod-harness.js';
import { runCli } from '../../support/cli.js';
import { makeDiskLikeImage } from '../../support/disk-images.js';
import { startNginx } from '../../support/nginx.js';
import { pushImage, pushVerbatim, registryManifest, startRegistry, writeOciLayout, type ImageSpec, type PushOptions, type TestRegistry } from '../../support/registry.js';
import { allocatedBytes, makeTempDir, qemuRawSha256, run, sha256File, type TempDir } from '../../support/tools.js';

const MiB = 1 << 20;

describe('registry source (docker-registry + skopeo)', () => {
  let dir: TempDir;
  let registry: TestRegistry;
  let rawA: string;
  let rawB: string;
  let shaA: string;
  let shaB: string;
  const digests: Record<string, string> = {};
  let counter = 0;

  /** A layer directory holding `files` (path in the image → local file, or '' for an empty file). */
  function layerDir(files: Record<string, string>): string {
    const layer = dir.join(`layer-${counter++}`);
    for (const [inImage, local] of Object.entries(files)) {
      const target = path.join(layer, inImage);
      mkdirSync(path.dirname(target), { recursive: true });
      if (local.endsWith('/')) mkdirSync(target, { recursive: true });
      // cp keeps holes (copyFileSync does not), so tar --sparse finds them.
      else if (local) run('cp', ['--sparse=always', local, target]);
      else writeFileSync(target, '');
    }
    mkdirSync(layer, { recursive: true });
    return layer;
  }

  async function publish(repoAndTag: string, images: ImageSpec[], options: PushOptions & { verbatim?: boolean } = {}): Promise<string> {
    const layout = dir.join(`layout-${counter++}`);
    await writeOciLayout(layout, 'v1', images);
    const digest = options.verbatim ? pushVerbatim(registry, layout, repoAndTag) : pushImage(registry, layout, 'v1', repoAndTag, options);
    digests[repoAndTag] = digest;
    return layout;
  }

  async function importRef(ref: string, extra: string[] = []) {
    const out = dir.join(`out-${counter++}.img`);
    const result = await runCli(['import', `docker://${registry.host}/${ref}`, '-o', out, '--insecure', '--json', ...extra]);
    const json = result.stdout.trim() ? (JSON.parse(result.stdout.trim().split('\n').pop()!) as Record<string, unknown>) : {};
    return { ...result, out, json };
  }

  async function expectImported(ref: string, sha: string, extra: string[] = []) {
    const result = await importRef(ref, extra);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(result.out), sha, `${ref}: content differs from qemu-img's conversion`);
    return result;
  }

  async function expectFailure(ref: string, category: string, pattern: RegExp, extra: string[] = []) {
    const result = await importRef(ref, extra);
    assert.equal(result.code, 1, `expected failure, got ${result.code}: ${result.stderr}`);
    assert.equal(result.json.category, category, result.stderr);
    assert.match(String(result.json.error), pattern);
    assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
    assert.ok(!existsSync(result.out), 'no output left behind');
    return result;
  }

  before(async () => {
    dir = makeTempDir('cdi-registry-');
    registry = await startRegistry(dir);
    rawA = dir.join('a.raw');
    rawB = dir.join('b.raw');
    makeDiskLikeImage(rawA, 4 * MiB);
    makeDiskLikeImage(rawB, 3 * MiB + 512);
    shaA = await qemuRawSha256(rawA, dir.path);
    shaB = await qemuRawSha256(rawB, dir.path);
    const qcow2 = dir.join('a.qcow2');
    run('qemu-img', ['convert', '-O', 'qcow2', rawA, qcow2]);
    run('xz', ['-k', '-T1', '-0', rawA]);
    run('gzip', ['-k', '-1', qcow2]);
    run('zstd', ['-q', '-k', qcow2]);
    const label = ['INSTANCETYPE_KUBEVIRT_IO_DEFAULT_INSTANCETYPE=u1.small', 'PATH=/usr/bin'];

    await publish('disks/raw:oci', [{ layers: [{ dir: layerDir({ 'disk/disk.img': rawA }) }], env: label }], { verbatim: true });
    await publish('disks/raw:v2s2', [{ layers: [{ dir: layerDir({ 'disk/disk.img': rawA }) }] }], { format: 'v2s2' });
    await publish('disks/qcow2:latest', [{ layers: [{ dir: layerDir({ 'disk/fedora.qcow2': qcow2 }), compression: 'gzip' }] }]);
    await publish('disks/rawxz:latest', [{ layers: [{ dir: layerDir({ 'disk/disk.img.xz': `${rawA}.xz` }), compression: 'zstd', dotPrefix: true }] }]);
    await publish('disks/qcow2gz:latest', [{ layers: [{ dir: layerDir({ 'disk/disk.qcow2.gz': `${qcow2}.gz` }) }] }]);
    await publish('disks/qcow2zst:latest', [{ layers: [{ dir: layerDir({ 'disk/disk.qcow2.zst': `${qcow2}.zst` }) }] }], { format: 'v2s2' });
    const twoArchitectures: ImageSpec[] = [
      { architecture: 'amd64', layers: [{ dir: layerDir({ 'disk/disk.img': rawA }) }] },
      { architecture: 'arm64', layers: [{ dir: layerDir({ 'disk/disk.img': rawB }) }] },
    ];
    await publish('multi:latest', twoArchitectures);
    await publish('multi:unnamed', [
      { layers: [{ dir: layerDir({ 'disk/disk.img': rawA }) }], platformInIndex: false },
      { layers: [{ dir: layerDir({ 'disk/disk.img': rawB }) }], platformInIndex: false },
    ]);
    await publish('multi:mixed', [
      { architecture: 'arm64', layers: [{ dir: layerDir({ 'disk/disk.img': rawB }) }] },
      { layers: [{ dir: layerDir({ 'disk/disk.img': rawA }) }], platformInIndex: false },
    ]);
    await publish('multi:list', twoArchitectures, { format: 'v2s2' });
    await publish('layers/whiteout:latest', [
      {
        layers: [
          { dir: layerDir({ 'etc/hostname': '', 'disk/old.img': rawB }) },
          { dir: layerDir({ 'disk/.wh.old.img': '' }), compression: 'gzip' },
          { dir: layerDir({ 'disk/new.img': rawA, 'etc/motd': '' }) },
        ],
      },
    ]);
    await publish('layers/opaque:latest', [
      {
        layers: [
          { dir: layerDir({ 'disk/disk.img': rawB, 'disk/extra.img': rawB }) },
          { dir: layerDir({ 'disk/.wh..wh..opq': '', 'disk/disk.img': rawA }), dotPrefix: true },
        ],
      },
    ]);
    // `tar --sparse` keeps only the data of a file with holes; the real name may sit in PAX records.
    const holey = dir.join('holey.img');
    run('cp', ['--sparse=always', rawA, holey]);
    assert.ok(allocatedBytes(holey) <= statSync(holey).size - 512 * 1024, 'the copy has holes for tar --sparse to find');
    for (const sparse of ['gnu', 'pax-0.0', 'pax-0.1', 'pax-1.0'] as const) {
      await publish(`sparse/${sparse}:latest`, [{ layers: [{ dir: layerDir({ 'disk/disk.img': holey, 'etc/motd': rawB }), sparse }] }]);
    }
    // Found by a QA pass: entry names runtimes clean, and a v7 tar (no ustar magic), were refused.
    await publish('layers/v7:latest', [{ layers: [{ dir: layerDir({ 'disk/disk.img': rawA }), format: 'v7' }] }]);
    await publish('bad/nodisk:latest', [{ layers: [{ dir: layerDir({ 'etc/hostname': '', 'data/disk.img': rawB }) }] }]);
    await publish('bad/twoinonelayer:latest', [{ layers: [{ dir: layerDir({ 'disk/a.img': rawA, 'disk/z.img': rawB }) }] }]);
    await publish('bad/twodisks:latest', [
      { layers: [{ dir: layerDir({ 'disk/one.img': rawB }) }, { dir: layerDir({ 'disk/two.img': rawA }) }] },
    ]);
    await publish('bad/subdir:latest', [{ layers: [{ dir: layerDir({ 'disk/sub/': '/', 'disk/sub/x.img': rawB }) }] }]);
    await publish('bad/whited:latest', [
      { layers: [{ dir: layerDir({ 'disk/disk.img': rawA }) }, { dir: layerDir({ '.wh.disk': '' }) }] },
    ]);
  });

  after(async () => {
    await registry?.stop();
    dir?.remove();
  });

  test('raw disk, OCI manifest, plain tar layer, by tag: identical to qemu-img, labels from the image config', async () => {
    assert.equal(registryManifest(registry, 'disks/raw:oci').layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar');
    const result = await expectImported('disks/raw:oci', shaA);
    assert.deepEqual(result.json.labels, { 'instancetype.kubevirt.io/default-instancetype': 'u1.small' });
  });

  test('raw disk in a v7 tar layer (no ustar magic), as Go\'s archive/tar reads it', async () => {
    await expectImported('layers/v7:latest', shaA);
  });

  test('info: a raw disk is described from the headers; --scan reads it all and finds what an import refuses', async () => {
    const info = async (ref: string, extra: string[] = []) => runCli(['info', `docker://${registry.host}/${ref}`, '--insecure', '--json', ...extra]);
    const plain = await info('disks/raw:oci');
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal((JSON.parse(plain.stdout) as { 'virtual-size': number })['virtual-size'], 4 * MiB);
    // A second file after the disk in its layer shows only past the disk's bytes (found by a QA pass: info said nothing).
    const scanned = await info('bad/twoinonelayer:latest', ['--scan']);
    assert.equal(scanned.code, 1, scanned.stderr);
    assert.match(scanned.stderr, /has more than one file under \/disk \(\/disk\/a\.img and \/disk\/z\.img\)/);
    await expectFailure('bad/twoinonelayer:latest', 'bad-input', /has more than one file under \/disk \(\/disk\/a\.img and \/disk\/z\.img\)/);
  });

  test('raw disk, Docker v2 schema 2 manifest', async () => {
    assert.equal(registryManifest(registry, 'disks/raw:v2s2').mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    await expectImported('disks/raw:v2s2', shaA);
  });

  test('by digest (@sha256:…)', async () => {
    const digest = digests['disks/raw:oci']!;
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    await expectImported(`disks/raw@${digest}`, shaA);
  });

  test('qcow2 in a gzip layer (one pass)', async () => {
    const result = await expectImported('disks/qcow2:latest', shaA);
    assert.deepEqual(result.json.formats, ['qcow2']);
  });

  test('raw.xz in a zstd layer with ./disk/ names', async () => {
    assert.equal(registryManifest(registry, 'disks/rawxz:latest').layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    const result = await expectImported('disks/rawxz:latest', shaA);
    assert.deepEqual(result.json.formats, ['xz', 'raw']);
  });

  test('qcow2.gz and qcow2.zst disks', async () => {
    assert.deepEqual((await expectImported('disks/qcow2gz:latest', shaA)).json.formats, ['gzip', 'qcow2']);
    assert.deepEqual((await expectImported('disks/qcow2zst:latest', shaA)).json.formats, ['zstd', 'qcow2']);
  });

  test('OCI index and Docker manifest list: --arch picks the platform', async () => {
    assert.equal(registryManifest(registry, 'multi:list', 'application/vnd.docker.distribution.manifest.list.v2+json').mediaType, 'application/vnd.docker.distribution.manifest.list.v2+json');
    await expectImported('multi:list', shaB, ['--arch', 'arm64']);
    await expectImported('multi:latest', shaB, ['--arch', 'arm64']);
    await expectImported('multi:latest', shaA, ['--arch', 'amd64']);
    if (process.arch === 'x64' || process.arch === 'arm64') {
      // No --arch: the node's own architecture, in Go's words (x64 → amd64).
      await expectImported('multi:latest', process.arch === 'x64' ? shaA : shaB);
    }
    await expectFailure('multi:latest', 'bad-input', /no image for architecture s390x \(available: amd64, arm64\)/, ['--arch', 's390x']);
    // Entries without a platform fit any: the first of them when none names the architecture, as
    // containers/image (skopeo, CDI) chooses.
    await expectImported('multi:unnamed', shaA, ['--arch', 'amd64']);
    await expectImported('multi:mixed', shaA, ['--arch', 'amd64']);
    await expectImported('multi:mixed', shaB, ['--arch', 'arm64']);
    // A single-platform image is checked against an architecture that was asked for.
    await expectImported('disks/raw:oci', shaA, ['--arch', 'amd64']);
    await expectFailure('disks/raw:oci', 'bad-input', /manifest image architecture "amd64" doesn't match the requested architecture "arm64"/, ['--arch', 'arm64']);
  });

  test('pod mode: INSECURE_TLS for a plain-http registry, IMPORTER_REGISTRY_IMAGE_ARCHITECTURE picks the platform; unknown tag', async () => {
    const root = makePodRoot();
    try {
      const env = { IMPORTER_SOURCE: 'registry', INSECURE_TLS: 'true', PREALLOCATION: 'false', FILESYSTEM_OVERHEAD: '0' };
      const result = await runPod(root, { ...env, IMPORTER_ENDPOINT: `docker://${registry.host}/multi:latest`, IMPORTER_REGISTRY_IMAGE_ARCHITECTURE: 'arm64' });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.json, { preallocationApplied: false, message: 'Import Complete' });
      assert.equal(await sha256File(root.diskImage), shaB);

      const missing = await runPod(root, { ...env, IMPORTER_ENDPOINT: `docker://${registry.host}/multi:gone` });
      assert.equal(missing.code, 1);
      // CDI's controller sets the DataVolume's reason to ImagePullFailed on "failed to pull image".
      assert.match(missing.message ?? '', /^Unable to process data: failed to pull image: image 127\.0\.0\.1:\d+\/multi:gone not found \(manifest unknown\)/);

      const otherArch = await runPod(root, { ...env, IMPORTER_ENDPOINT: `docker://${registry.host}/disks/raw:oci`, IMPORTER_REGISTRY_IMAGE_ARCHITECTURE: 'arm64' });
      assert.equal(otherArch.code, 1);
      assert.match(otherArch.message ?? '', /^Unable to process data: .*manifest image architecture "amd64" doesn't match the requested architecture "arm64"/);
      assert.ok(!existsSync(root.diskImage), 'no disk from the wrong architecture');
    } finally {
      root.remove();
    }
  });

  test('a disk whited out in a later layer and replaced in another', async () => {
    await expectImported('layers/whiteout:latest', shaA);
  });

  test('an opaque disk/ directory hides the lower layers\' files', async () => {
    await expectImported('layers/opaque:latest', shaA);
  });

  test('a disk packed by tar --sparse (GNU headers, PAX 0.0, 0.1 and 1.0): its holes restored', async () => {
    for (const sparse of ['gnu', 'pax-0.0', 'pax-0.1', 'pax-1.0']) {
      const result = await expectImported(`sparse/${sparse}:latest`, shaA);
      assert.equal(result.json.virtualSize, 4 * MiB, sparse);
    }
  });

  test('errors: no disk, two disks, a directory, a whited-out disk directory', async () => {
    await expectFailure('bad/nodisk:latest', 'bad-input', /has no disk image: expected one regular file under \/disk/);
    await expectFailure('bad/twodisks:latest', 'bad-input', /more than one file under \/disk \(\/disk\/two\.img and \/disk\/one\.img\)/);
    await expectFailure('bad/subdir:latest', 'bad-input', /has a directory \/disk\/sub/);
    await expectFailure('bad/whited:latest', 'bad-input', /has no disk image/);
  });

  test('unknown tag and unknown repository: manifest unknown', async () => {
    await expectFailure('disks/raw:nope', 'bad-input', /image 127\.0\.0\.1:\d+\/disks\/raw:nope not found \(manifest unknown\)/);
    await expectFailure('nothere/at-all:v1', 'bad-input', /not found \(manifest unknown\)/);
  });

  test('a docker:// reference to a web server, not a registry: said as such, not as a missing tag', async () => {
    const nginx = await startNginx({ root: dir.path });
    try {
      const host = new URL(nginx.http).host;
      const out = dir.join('not-a-registry.img');
      const result = await runCli(['import', `docker://${host}/disks/raw:v1`, '-o', out, '--insecure']);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(
        result.stderr,
        `cdi-importer: error: failed to pull image: ${host} does not look like a container registry: http://${host}/v2/ and http://${host}/v2/disks/raw/manifests/v1 both answered 404 Not Found, with no registry error (a registry answers /v2/ with 200 or 401); check the host and port of the docker:// reference\n`,
      );
      assert.equal(existsSync(out), false);
    } finally {
      await nginx.stop();
    }
  });

  test('plain-http registry without --insecure: one clear transport error', async () => {
    const out = dir.join('plain.img');
    const result = await runCli(['import', `docker://${registry.host}/disks/raw:oci`, '-o', out, '--json']);
    assert.equal(result.code, 1);
    const json = JSON.parse(result.stdout.trim()) as { category: string; error: string };
    assert.equal(json.category, 'cannot-connect');
    assert.match(json.error, /TLS handshake with 127\.0\.0\.1:\d+ failed.*--insecure/);
    assert.doesNotMatch(json.error, /http:\/\/ URL/, 'a docker:// reference has no http:// form');
  });

  test('a corrupt byte after the disk (another file of its layer): the import fails, the qcow2 written is removed', async () => {
    const notes = dir.join('notes.txt');
    writeFileSync(notes, 'NOTES-MARKER '.repeat(800));
    const qcow2 = dir.join('a.qcow2');
    await publish('bad/corrupt-after:latest', [{ layers: [{ dir: layerDir({ 'disk/disk.qcow2': qcow2, 'zz/notes.txt': notes }) }] }], { verbatim: true });
    const blob = registry.blobFile(registryManifest(registry, 'bad/corrupt-after:latest').layers[0]!.digest);
    const at = readFileSync(blob).indexOf('NOTES-MARKER');
    assert.ok(at > statSync(qcow2).size, 'the notes come after the disk in the layer');
    const fd = openSync(blob, 'r+');
    writeSync(fd, Buffer.from('n'), 0, 1, at);
    closeSync(fd);
    await expectFailure('bad/corrupt-after:latest', 'bad-input', /digest mismatch for layer 1 of 1/);
  });

  test('a corrupt layer blob in the registry: digest mismatch, nothing left', async () => {
    await publish('bad/corrupt:latest', [{ layers: [{ dir: layerDir({ 'disk/disk.img': rawA }) }] }], { verbatim: true });
    const layerDigest = registryManifest(registry, 'bad/corrupt:latest').layers[0]!.digest;
    // One byte in the middle of the disk's data: the tar stays valid, only the digest can tell.
    const fd = openSync(registry.blobFile(layerDigest), 'r+');
    writeSync(fd, Buffer.from([0x5a]), 0, 1, 2 * MiB + 12345);
    closeSync(fd);
    await expectFailure('bad/corrupt:latest', 'bad-input', new RegExp(`digest mismatch for layer 1 of 1 \\(${layerDigest}\\)`));
  });
});
