import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { podPaths } from '../../src/pod/paths.js';
import { parsePodEnvironment } from '../../src/pod/pod-environment.js';
import { parseGoBool } from '../../src/util/cdi-environment.js';
import { makeTempDir } from '../support/tools.js';

describe('pod environment', () => {
  const dir = makeTempDir('cdi-pod-env-');
  after(() => dir.remove());
  mkdirSync(dir.join('data'));
  mkdirSync(dir.join('dev'));
  const paths = podPaths({ CDI_IMPORTER_ROOT: dir.path });

  test('paths: CDI defaults, moved by CDI_IMPORTER_ROOT', () => {
    assert.deepEqual(podPaths({}), {
      root: '/',
      dataDir: '/data',
      diskImage: '/data/disk.img',
      blockDevice: '/dev/cdi-block-volume',
      scratchDir: '/scratch',
      terminationLog: '/dev/termination-log',
      extraHeadersDir: '/extraheaders',
      proxyCertsDir: '/proxycerts',
    });
    assert.equal(paths.diskImage, dir.join('data', 'disk.img'));
  });

  test('an http import with everything set', (t) => {
    const full = makeTempDir('cdi-pod-env-full-');
    t.after(() => full.remove());
    mkdirSync(full.join('data'));
    mkdirSync(full.join('proxycerts'));
    writeFileSync(full.join('proxycerts', 'proxy.pem'), 'x');
    const config = parsePodEnvironment(
      {
        IMPORTER_SOURCE: 'http',
        IMPORTER_ENDPOINT: 'https://example.com/disk.qcow2',
        IMPORTER_CONTENTTYPE: 'kubevirt',
        IMPORTER_IMAGE_SIZE: '10Gi',
        IMPORTER_ACCESS_KEY_ID: 'user',
        IMPORTER_SECRET_KEY: 'pass',
        IMPORTER_CERT_DIR: '/certs',
        INSECURE_TLS: 'true',
        IMPORTER_EXTRA_HEADER_1: 'B: 2',
        IMPORTER_EXTRA_HEADER_0: 'A: 1',
        FILESYSTEM_OVERHEAD: '0.055',
        PREALLOCATION: 'True',
        IMPORTER_CHECKSUM: 'SHA1:' + 'A'.repeat(40),
        OWNER_UID: 'uid-1',
      },
      podPaths({ CDI_IMPORTER_ROOT: full.path }),
    );
    assert.equal(config.sourceKind, 'http');
    assert.equal(config.ownerUid, 'uid-1');
    assert.equal(config.blockMode, false);
    assert.deepEqual(config.request, {
      source: {
        kind: 'http',
        url: 'https://example.com/disk.qcow2',
        transport: {
          auth: { username: 'user', password: 'pass' },
          caPaths: ['/certs'],
          proxyCaPaths: [full.join('proxycerts')],
          insecure: true,
          headers: ['A: 1', 'B: 2'],
          loopbackBypassesProxy: true,
        },
      },
      contentType: 'kubevirt',
      target: { kind: 'file', path: full.join('data', 'disk.img'), atomic: false },
      filesystemOverhead: 0.055,
      preallocation: true,
      requestedSize: 10 * 2 ** 30,
      checksum: { algorithm: 'sha1', hex: 'a'.repeat(40) },
    });
  });

  test('basic auth only when both halves are set; defaults when unset', () => {
    const config = parsePodEnvironment({ IMPORTER_SOURCE: 'registry', IMPORTER_ENDPOINT: 'docker://r/x:1', IMPORTER_ACCESS_KEY_ID: 'u' }, paths);
    assert.deepEqual(config.request.source, { kind: 'registry', url: 'docker://r/x:1', transport: { loopbackBypassesProxy: true } });
    assert.equal(config.request.filesystemOverhead, 0.06);
    assert.equal(config.request.preallocation, false);
    assert.equal(config.request.requestedSize, undefined);
    assert.equal(config.request.scratchDir, undefined);
  });

  test('archive goes to /data; /scratch is used when mounted; block mode when the device exists', () => {
    const root = makeTempDir('cdi-pod-env-block-');
    try {
      mkdirSync(root.join('dev'));
      mkdirSync(root.join('scratch'));
      const p = podPaths({ CDI_IMPORTER_ROOT: root.path });
      let config = parsePodEnvironment({ IMPORTER_SOURCE: 'http', IMPORTER_ENDPOINT: 'http://x/a.tar', IMPORTER_CONTENTTYPE: 'archive' }, p);
      assert.deepEqual(config.request.target, { kind: 'directory', path: root.join('data') });
      assert.equal(config.request.scratchDir, root.join('scratch'));
      symlinkSync('/dev/null', root.join('dev', 'cdi-block-volume'));
      config = parsePodEnvironment({ IMPORTER_SOURCE: 'http', IMPORTER_ENDPOINT: 'http://x/a.img', FILESYSTEM_OVERHEAD: '0.06' }, p);
      assert.equal(config.blockMode, true);
      assert.deepEqual(config.request.target, { kind: 'block', path: root.join('dev', 'cdi-block-volume') });
      assert.equal(config.request.filesystemOverhead, 0);
    } finally {
      root.remove();
    }
  });

  test('errors, in the words the termination message carries', () => {
    const parse = (env: NodeJS.ProcessEnv) => () => parsePodEnvironment(env, paths);
    assert.throws(parse({ IMPORTER_SOURCE: 's3' }), { message: 'Unknown data source: s3' });
    assert.throws(parse({}), { message: 'Unknown data source: ' });
    assert.throws(parse({ IMPORTER_SOURCE: 'http', IMPORTER_ENDPOINT: 'http://x', PREALLOCATION: 'maybe' }), /PREALLOCATION environment variable is with a wrong value "maybe"/);
    assert.throws(parse({ IMPORTER_SOURCE: 'http', IMPORTER_ENDPOINT: '' }), /IMPORTER_ENDPOINT is empty/);
    assert.throws(parse({ IMPORTER_SOURCE: 'http', IMPORTER_ENDPOINT: 'http://x', IMPORTER_CONTENTTYPE: 'iso' }), /Unsupported content type iso/);
    assert.throws(parse({ IMPORTER_SOURCE: 'registry', IMPORTER_ENDPOINT: 'docker://x', IMPORTER_CONTENTTYPE: 'archive' }), /Unsupported content type archive when importing from registry/);
    assert.throws(parse({ IMPORTER_SOURCE: 'http', IMPORTER_ENDPOINT: 'http://x', FILESYSTEM_OVERHEAD: '1.5' }), /invalid FILESYSTEM_OVERHEAD "1.5"/);
    assert.throws(parse({ IMPORTER_SOURCE: 'http', IMPORTER_ENDPOINT: 'http://x', IMPORTER_CHECKSUM: 'crc32:00' }), /^ImportError: IMPORTER_CHECKSUM: invalid checksum/);
  });

  test('Go boolean spellings', () => {
    for (const t of ['1', 't', 'T', 'true', 'TRUE', 'True']) assert.equal(parseGoBool(t), true);
    for (const f of ['0', 'f', 'F', 'false', 'FALSE', 'False']) assert.equal(parseGoBool(f), false);
    for (const x of ['', 'yes', 'tRuE', ' true']) assert.equal(parseGoBool(x), undefined);
  });
});
