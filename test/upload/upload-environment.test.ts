/** CDI's upload server environment to our configuration: defaults, block mode, bad values in one line. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { podPaths } from '../../src/pod/paths.js';
import { parseUploadEnvironment } from '../../src/upload/upload-environment.js';
import { ImportError } from '../../src/errors.js';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from '../support/cli.js';

const tls = { TLS_CERT_FILE: '/certs/tls.crt', TLS_KEY_FILE: '/certs/tls.key', CLIENT_CERT_FILE: '/certs/ca.crt', CLIENT_NAME: 'cdi-uploadproxy' };
const root = { CDI_IMPORTER_ROOT: '/nonexistent-upload-root' };
const parse = (env: NodeJS.ProcessEnv) => parseUploadEnvironment({ ...root, ...env }, podPaths({ ...root, ...env }));

describe('upload server environment', () => {
  test("CDI's defaults", () => {
    const config = parse(tls);
    assert.equal(config.listenAddress, '0.0.0.0');
    assert.equal(config.listenPort, 8443);
    assert.equal(config.healthzPort, 8080);
    assert.equal(config.destination, '/nonexistent-upload-root/data/disk.img');
    assert.equal(config.terminationLog, '/nonexistent-upload-root/dev/termination-log');
    assert.equal(config.blockMode, false);
    assert.equal(config.filesystemOverhead, 0.06);
    assert.equal(config.preallocation, false);
    assert.equal(config.imageSize, undefined);
    assert.equal(config.deadline, undefined);
  });

  test('values as the controller sets them', () => {
    const config = parse({
      ...tls,
      LISTEN_ADDRESS: '',
      LISTEN_PORT: '9443',
      HEALTHZ_PORT: 'none',
      UPLOAD_IMAGE_SIZE: '1Gi',
      FILESYSTEM_OVERHEAD: '0.055',
      PREALLOCATION: 'true',
      DEADLINE: '2030-01-02T03:04:05Z',
      DESTINATION: '/data/disk.img',
    });
    assert.equal(config.listenAddress, '');
    assert.equal(config.listenPort, 9443);
    assert.equal(config.healthzPort, undefined);
    assert.equal(config.imageSize, 2 ** 30);
    assert.equal(config.filesystemOverhead, 0.055);
    assert.equal(config.preallocation, true);
    assert.equal(config.deadline?.toISOString(), '2030-01-02T03:04:05.000Z');
    assert.equal(config.destination, '/data/disk.img');
  });

  // Block mode (a loop device, overhead 0) is covered end to end in upload-server.test.ts.
  test('only a block device means block mode: a character device keeps file mode and its overhead', () => {
    const config = parse({ ...tls, DESTINATION: '/dev/null', FILESYSTEM_OVERHEAD: '0.1' });
    assert.equal(config.blockMode, false);
    assert.equal(config.filesystemOverhead, 0.1);
  });

  for (const [name, env, pattern] of [
    ['missing TLS_CERT_FILE', { ...tls, TLS_CERT_FILE: '' }, /TLS_CERT_FILE is not set/],
    ['missing CLIENT_NAME', { ...tls, CLIENT_NAME: undefined }, /CLIENT_NAME is not set/],
    ['bad port', { ...tls, LISTEN_PORT: '70000' }, /invalid LISTEN_PORT "70000"/],
    ['bad size', { ...tls, UPLOAD_IMAGE_SIZE: '10 gigs' }, /invalid UPLOAD_IMAGE_SIZE/],
    ['bad overhead', { ...tls, FILESYSTEM_OVERHEAD: '1.5' }, /invalid FILESYSTEM_OVERHEAD/],
    ['bad preallocation', { ...tls, PREALLOCATION: 'yes' }, /PREALLOCATION environment variable is with a wrong value "yes"/],
    ['deadline without a zone', { ...tls, DEADLINE: '2030-01-02T03:04:05' }, /invalid DEADLINE/],
    ['bad checksum', { ...tls, IMPORTER_CHECKSUM: 'crc:00' }, /IMPORTER_CHECKSUM/],
  ] as const) {
    test(`${name}: one usage error`, () => {
      assert.throws(
        () => parse(env as NodeJS.ProcessEnv),
        (err: unknown) => err instanceof ImportError && err.category === 'usage' && pattern.test(err.message) && !err.message.includes('\n'),
      );
    });
  }

  test('`cdi-importer upload-server` at a terminal: a missing variable is one usage line and exit 2, nothing written', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'cdi-upload-env-'));
    try {
      const env = { CDI_IMPORTER_ROOT: home, TLS_CERT_FILE: '', TLS_KEY_FILE: '', CLIENT_CERT_FILE: '', CLIENT_NAME: '' };
      const missing = await runCli(['upload-server'], { env });
      assert.equal(missing.code, 2, missing.stderr);
      assert.equal(missing.stderr, 'cdi-importer: error: TLS_CERT_FILE is not set: the upload server needs its TLS certificate (PEM file)\n');
      assert.equal(missing.stdout, '');
      const badPort = await runCli(['upload-server'], { env: { ...env, ...tls, LISTEN_PORT: '70000' } });
      assert.equal(badPort.code, 2, badPort.stderr);
      assert.match(badPort.stderr, /^cdi-importer: error: invalid LISTEN_PORT "70000"[^\n]*\n$/);
      assert.equal(existsSync(path.join(home, 'dev', 'termination-log')), false);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
