/**
 * Pod mode against HTTPS with a private CA and Basic auth, configured the CDI way: the
 * certConfigMap mounted as IMPORTER_CERT_DIR, the Secret as IMPORTER_ACCESS_KEY_ID /
 * IMPORTER_SECRET_KEY, INSECURE_TLS for the insecure annotation.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { startNginx, type NginxServer } from '../support/nginx.js';
import { makeTestCertificates, type TestCertificates } from '../support/tls-ca.js';
import { makeTempDir, qemuRawSha256, sha256File, type TempDir } from '../support/tools.js';
import { makePodRoot, runPod, type PodRoot } from './pod-harness.js';

const MiB = 1 << 20;
const USER = 'cdi';
const PASSWORD = 'pa:ss word';

describe('pod mode over HTTPS with a custom CA and Basic auth', () => {
  let work: TempDir;
  let nginx: NginxServer;
  let certificates: TestCertificates;
  let certDir: string;
  const roots: PodRoot[] = [];
  const podRoot = () => {
    const root = makePodRoot();
    roots.push(root);
    return root;
  };

  before(async () => {
    work = makeTempDir('cdi-pod-tls-');
    mkdirSync(work.join('www'));
    makeDiskLikeImage(work.join('www', 'raw.img'), 4 * MiB);
    certificates = makeTestCertificates(work.path);
    // What the kubelet mounts for a certConfigMap: one file per key.
    certDir = work.join('certs');
    mkdirSync(certDir);
    cpSync(certificates.caCert, work.join('certs', 'ca.pem'));
    nginx = await startNginx({ root: work.join('www'), auth: { username: USER, password: PASSWORD }, certificates });
  });

  after(async () => {
    await nginx?.stop();
    for (const root of roots) root.remove();
    work?.remove();
  });

  const env = (extra: Record<string, string>) => ({
    IMPORTER_SOURCE: 'http',
    IMPORTER_ENDPOINT: `${nginx.https}auth/raw.img`,
    IMPORTER_ACCESS_KEY_ID: USER,
    IMPORTER_SECRET_KEY: PASSWORD,
    PREALLOCATION: 'false',
    FILESYSTEM_OVERHEAD: '0',
    ...extra,
  });

  test('IMPORTER_CERT_DIR + credentials: imported', async () => {
    const root = podRoot();
    const result = await runPod(root, env({ IMPORTER_CERT_DIR: certDir }));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(root.diskImage), await qemuRawSha256(work.join('www', 'raw.img'), work.path));
  });

  test('without the CA: "Unable to connect to http data source", nothing written', async () => {
    const root = podRoot();
    const result = await runPod(root, env({}));
    assert.equal(result.code, 1);
    assert.match(result.message!, /^Unable to connect to http data source: .*(certificate|CA)/i);
    assert.equal(existsSync(root.diskImage), false);
  });

  test('INSECURE_TLS=true without the CA: imported', async () => {
    const root = podRoot();
    const result = await runPod(root, env({ INSECURE_TLS: 'true' }));
    assert.equal(result.code, 0, result.stderr);
  });

  test('a wrong password: 401 reported, the password never printed', async () => {
    const root = podRoot();
    const result = await runPod(root, env({ IMPORTER_CERT_DIR: certDir, IMPORTER_SECRET_KEY: 'wrong-secret-xyz' }));
    assert.equal(result.code, 1);
    assert.match(result.message!, /^Unable to connect to http data source: .*401/);
    assert.doesNotMatch(result.message! + result.stderr, /wrong-secret-xyz/);
  });
});
