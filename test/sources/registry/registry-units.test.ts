/** The registry source's pure parts: references, labels, auth challenges, the whiteout-aware disk walk. */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import type { Header } from 'tar-stream';
import { parseAuthChallenge } from '../../../src/sources/registry/auth-challenge.js';
import { normalizeEntryPath, walkForDisk } from '../../../src/sources/registry/disk-walk.js';
import { envToLabel, labelsFromEnv } from '../../../src/sources/registry/image-labels.js';
import type { LayerEntry } from '../../../src/sources/registry/layer-entries.js';
import { wantedArchitecture } from '../../../src/sources/registry/platform.js';
import { parseRegistryReference } from '../../../src/sources/registry/reference.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

describe('registry reference', () => {
  test('host:port, nested repository, tag', () => {
    assert.deepEqual(parseRegistryReference('docker://127.0.0.1:5000/kubevirt/fedora-cloud:41'), {
      host: '127.0.0.1:5000',
      repository: 'kubevirt/fedora-cloud',
      reference: '41',
      digest: undefined,
      display: '127.0.0.1:5000/kubevirt/fedora-cloud:41',
    });
  });

  test('digest, default tag, Docker Hub names', () => {
    const byDigest = parseRegistryReference(`docker://quay.io/containerdisks/fedora@${DIGEST}`);
    assert.equal(byDigest.reference, DIGEST);
    assert.equal(byDigest.digest, DIGEST);
    assert.equal(parseRegistryReference('docker://quay.io/containerdisks/fedora').reference, 'latest');
    assert.equal(parseRegistryReference('docker://localhost/x').host, 'localhost');
    const hub = parseRegistryReference('docker://busybox');
    assert.equal(hub.host, 'registry-1.docker.io');
    assert.equal(hub.repository, 'library/busybox');
    assert.equal(parseRegistryReference('docker://docker.io/kubevirt/cirros:v1').host, 'registry-1.docker.io');
  });

  test('invalid references are usage errors', () => {
    for (const bad of ['http://x/y', 'docker://Host.io/UPPER:1', `docker://h.io/r@sha256:abc`, 'docker://h.io/r:bad tag', 'docker://user:pw@h.io/r']) {
      assert.throws(() => parseRegistryReference(bad), (err: Error & { category?: string }) => err.category === 'usage', bad);
    }
  });
});

describe('labels from image config env (CDI envsToLabels)', () => {
  test('mapping', () => {
    assert.equal(envToLabel('INSTANCETYPE_KUBEVIRT_IO_DEFAULT_INSTANCETYPE'), 'instancetype.kubevirt.io/default-instancetype');
    assert.equal(envToLabel('INSTANCETYPE_KUBEVIRT_IO_DEFAULT_PREFERENCE'), 'instancetype.kubevirt.io/default-preference');
    assert.equal(envToLabel('KUBEVIRT_IO_OS'), 'kubevirt.io/os');
    assert.equal(envToLabel('A_B_KUBEVIRT_IO_X_Y'), 'a.b.kubevirt.io/x-y');
    assert.deepEqual(labelsFromEnv(['PATH=/bin', 'INSTANCETYPE_KUBEVIRT_IO_DEFAULT_INSTANCETYPE=u1.small', 'NOEQUALS_KUBEVIRT_IO_X', 7]), {
      'instancetype.kubevirt.io/default-instancetype': 'u1.small',
    });
    assert.deepEqual(labelsFromEnv(undefined), {});
  });
});

describe('WWW-Authenticate', () => {
  test('Bearer with quoted params, Basic', () => {
    assert.deepEqual(parseAuthChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'), {
      scheme: 'bearer',
      params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull' },
    });
    assert.deepEqual(parseAuthChallenge('Basic realm="Registry Realm"'), { scheme: 'basic', params: { realm: 'Registry Realm' } });
    assert.equal(parseAuthChallenge(undefined), undefined);
  });
});

test('architecture: Go names for the node', () => {
  assert.equal(wantedArchitecture(undefined, 'x64'), 'amd64');
  assert.equal(wantedArchitecture(undefined, 'arm64'), 'arm64');
  assert.equal(wantedArchitecture('s390x', 'x64'), 's390x');
});

describe('disk walk over layers (whiteouts, one disk)', () => {
  type Fake = [name: string, type?: Header['type'], content?: string, linkname?: string];
  const layer = (entries: Fake[]): LayerEntry[] =>
    entries.map(([name, type = 'file', content = '', linkname]) => ({
      header: { name, type, size: content.length, linkname } as Header,
      facts: undefined,
      body: Readable.from([Buffer.from(content)]),
    }));

  async function findDisk(layers: Fake[][]): Promise<{ path: string; content: string; opened: number[] }> {
    const opened: number[] = [];
    const walk = walkForDisk(layers.length, (i) => (opened.push(i), Readable.from(layer(layers[i]!))), 'img');
    const first = await walk.next();
    assert.ok(!first.done);
    const chunks: Buffer[] = [];
    for await (const c of first.value.body) chunks.push(c as Buffer);
    const rest = await walk.next();
    assert.ok(rest.done);
    return { path: first.value.path, content: Buffer.concat(chunks).toString(), opened };
  }

  async function walkError(layers: Fake[][]): Promise<string> {
    try {
      await findDisk(layers);
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error('no error');
  }

  test('paths: ./disk/, /disk/, trailing slash', () => {
    assert.equal(normalizeEntryPath('./disk/a.img'), 'disk/a.img');
    assert.equal(normalizeEntryPath('/disk/'), 'disk');
    assert.equal(normalizeEntryPath('./'), '');
    // Found by a QA pass: runtimes (and CDI) clean these; they were refused as directories.
    assert.equal(normalizeEntryPath('disk//disk.img'), 'disk/disk.img');
    assert.equal(normalizeEntryPath('disk/./disk.img'), 'disk/disk.img');
    assert.equal(normalizeEntryPath('disk/sub/../disk.img'), 'disk/disk.img');
    assert.equal(normalizeEntryPath('../../disk/disk.img'), 'disk/disk.img');
    assert.equal(normalizeEntryPath('.'), '');
  });

  test('top layer first; lower layers still checked', async () => {
    const found = await findDisk([[['disk/', 'directory'], ['disk/a.img', 'file', 'A']], [['etc/x', 'file', 'x']]]);
    assert.deepEqual(found, { path: 'disk/a.img', content: 'A', opened: [1, 0] });
  });

  test('a later layer replaces the disk of the same name', async () => {
    assert.equal((await findDisk([[['disk/a.img', 'file', 'old']], [['disk/a.img', 'file', 'new']]])).content, 'new');
  });

  test('whiteout and opaque directories hide lower disks', async () => {
    assert.equal((await findDisk([[['disk/old.img', 'file', 'old']], [['disk/.wh.old.img']], [['./disk/new.img', 'file', 'new']]])).content, 'new');
    assert.equal((await findDisk([[['disk/x.img', 'file', 'x'], ['disk/y.img', 'file', 'y']], [['disk/.wh..wh..opq'], ['disk/z.img', 'file', 'z']]])).content, 'z');
    assert.equal((await findDisk([[['disk/sub/', 'directory'], ['disk/sub/q', 'file', 'q']], [['disk/.wh.sub'], ['disk/k.img', 'file', 'k']]])).content, 'k');
  });

  test('errors: none, two, the same twice in a layer, directory, symlink, disk whited out', async () => {
    assert.match(await walkError([[['etc/x', 'file', 'x']]]), /img has no disk image/);
    assert.match(await walkError([[['disk/a.img', 'file', 'a']], [['disk/b.img', 'file', 'b']]]), /more than one file under \/disk \(\/disk\/b\.img and \/disk\/a\.img\)/);
    assert.match(await walkError([[['disk/a.img', 'file', 'a'], ['disk/d/', 'directory']]]), /has a directory \/disk\/d/);
    assert.match(await walkError([[['disk/a.img', 'file', 'a'], ['disk/a.img', 'file', 'b']]]), /has \/disk\/a\.img twice in layer 1 of 1: rebuild the image/);
    assert.match(await walkError([[['disk/a.img', 'symlink', '', '../data/a.img']]]), /\/disk\/a\.img \(layer 1 of 1\) is a symbolic link to \.\.\/data\/a\.img, not a regular file/);
    assert.match(await walkError([[['data/x.qcow2', 'file', 'x'], ['disk/x.qcow2', 'link', '', './data/x.qcow2']]]), /\/disk\/x\.qcow2 \(layer 1 of 1\) is a hard link to \/data\/x\.qcow2, not a regular file/);
    // A file below a subdirectory of /disk, with or without an entry for the directory itself.
    assert.match(await walkError([[['disk/sub/x.qcow2', 'file', 'x']]]), /has a directory \/disk\/sub \(layer 1 of 1\) under \/disk/);
    assert.match(await walkError([[['./disk/sub/deeper/x', 'file', 'x']], [['etc/y', 'file', 'y']]]), /has a directory \/disk\/sub \(layer 1 of 2\) under \/disk/);
    assert.match(await walkError([[['disk/a.img', 'file', 'a']], [['.wh.disk']]]), /has no disk image/);
  });
});
