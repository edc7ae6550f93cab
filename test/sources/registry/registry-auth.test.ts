/**
 * Registry auth and TLS: a real docker-registry with htpasswd Basic auth behind TLS signed by a
 * test CA; the Bearer token flow through a small token-issuing front in front of it; and one pod
 * mode run (IMPORTER_SOURCE=registry) whose termination message carries the image's labels.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makePodRoot, runPod } from '../../pod/pod-harness.js';
import { runCli } from '../../support/cli.js';
import { makeDiskLikeImage } from '../../support/disk-images.js';
import { pushImage, startRegistry, writeOciLayout, type TestRegistry } from '../../support/registry.js';
import { startTinyproxy } from '../../support/tinyproxy.js';
import { makeTestCertificates, type TestCertificates } from '../../support/tls-ca.js';
import { makeUploadCertificates } from '../../upload/client-certificates.js';
import { makeTempDir, qemuRawSha256, run, sha256File, type TempDir } from '../../support/tools.js';

const MiB = 1 << 20;
const USER = 'alice';
const PASSWORD = 's3cret-pass:word';
const TOKEN = 'token-for-alice-7f3a';

describe('registry with Basic auth over TLS, and the Bearer token flow', () => {
  let dir: TempDir;
  let registry: TestRegistry;
  let certificates: TestCertificates;
  let certDir: string;
  let sha: string;
  let front: http.Server;
  let frontHost: string;
  const tokenRequests: { authorization?: string; service: string | null; scope: string | null }[] = [];
  /** Like Docker Hub for public images: a token for anyone who asks without credentials. */
  let anonymousTokens = false;
  /** Tokens the front accepts; each /token answer adds a fresh one. */
  const validTokens = new Set<string>();
  /** The next blob download is cut after 64 KiB and its token expires with it (a long pull). */
  let cutBlobAndExpireToken = false;
  let counter = 0;

  before(async () => {
    dir = makeTempDir('cdi-registry-auth-');
    certificates = makeTestCertificates(dir.path);
    certDir = dir.join('certs');
    mkdirSync(certDir);
    cpSync(certificates.caCert, dir.join('certs', 'ca.crt'));
    registry = await startRegistry(dir, { basicAuth: { user: USER, password: PASSWORD }, tls: certificates.valid });
    const layer = dir.join('layer');
    mkdirSync(dir.join('layer', 'disk'), { recursive: true });
    const raw = dir.join('disk.raw');
    makeDiskLikeImage(raw, 3 * MiB);
    sha = await qemuRawSha256(raw, dir.path);
    run('qemu-img', ['convert', '-O', 'qcow2', raw, dir.join('layer', 'disk', 'disk.qcow2')]);
    const layout = dir.join('layout');
    await writeOciLayout(layout, 'v1', [
      { layers: [{ dir: layer, compression: 'gzip' }], env: ['INSTANCETYPE_KUBEVIRT_IO_DEFAULT_PREFERENCE=fedora', 'TZ=UTC'] },
    ]);
    pushImage(registry, layout, 'v1', 'vm/fedora:41');

    // A Bearer-token front: /token hands out a token for Basic credentials; /v2/ wants the token
    // and forwards to the real registry (with its own Basic credentials, over TLS).
    const ca = readFileSync(certificates.caCert);
    front = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://front');
      if (url.pathname === '/token') {
        tokenRequests.push({ authorization: req.headers.authorization, service: url.searchParams.get('service'), scope: url.searchParams.get('scope') });
        const expected = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
        if (!(anonymousTokens && req.headers.authorization === undefined) && req.headers.authorization !== expected) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
          return;
        }
        const token = `${TOKEN}-${tokenRequests.length}`;
        validTokens.add(token);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
        return;
      }
      const bearer = req.headers.authorization?.replace(/^Bearer /, '') ?? '';
      if (!validTokens.has(bearer)) {
        const realm = `http://${frontHost}/token`;
        res
          .writeHead(401, {
            'www-authenticate': `Bearer realm="${realm}",service="front.test",scope="repository:vm/fedora:pull"`,
            'content-type': 'application/json',
          })
          .end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return;
      }
      const upstream = https.request(
        {
          host: '127.0.0.1',
          port: registry.port,
          path: req.url,
          method: req.method,
          ca,
          headers: { ...req.headers, host: registry.host, authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` },
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          const large = Number(answer.headers['content-length']) > 256 << 10; // the layer, not the config
          if (cutBlobAndExpireToken && large && url.pathname.includes('/blobs/') && req.headers.range === undefined && answer.statusCode === 200) {
            cutBlobAndExpireToken = false;
            let sent = 0;
            answer.on('data', (chunk: Buffer) => {
              if (sent >= 64 << 10) return;
              sent += chunk.length;
              res.write(chunk);
              if (sent >= 64 << 10) {
                validTokens.delete(bearer);
                res.destroy();
                answer.destroy();
              }
            });
            return;
          }
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    frontHost = `127.0.0.1:${(front.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise((resolve) => (front ? front.close(resolve) : resolve(undefined)));
    await registry?.stop();
    dir?.remove();
  });

  async function cli(args: string[]) {
    const out = dir.join(`out-${counter++}.img`);
    const result = await runCli(['import', ...args, '-o', out, '--json']);
    const last = result.stdout.trim().split('\n').pop() ?? '';
    const json = last ? (JSON.parse(last) as Record<string, unknown>) : {};
    return { ...result, out, json };
  }

  test('Basic auth with --user/--password, CA from --ca-cert: imported, identical to qemu-img', async () => {
    const result = await cli([`docker://${registry.host}/vm/fedora:41`, '--user', USER, '--password', PASSWORD, '--ca-cert', certDir]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(result.out), sha);
    assert.deepEqual(result.json.labels, { 'instancetype.kubevirt.io/default-preference': 'fedora' });
  });

  test('--insecure skips verification of the unknown CA', async () => {
    const result = await cli([`docker://${registry.host}/vm/fedora:41`, '--user', USER, '--password', PASSWORD, '--insecure']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(result.out), sha);
  });

  test('unknown CA without --ca-cert: one line naming the fix', async () => {
    const result = await cli([`docker://${registry.host}/vm/fedora:41`, '--user', USER, '--password', PASSWORD]);
    assert.equal(result.code, 1);
    assert.equal(result.json.category, 'cannot-connect');
    assert.match(String(result.json.error), /signed by an unknown certificate authority.*--ca-cert/);
  });

  test('through an https_proxy (CONNECT tunnel): imported, and the proxy saw the registry', async () => {
    const proxy = await startTinyproxy();
    try {
      const out = dir.join(`proxied-${counter++}.img`);
      const result = await runCli(['import', `docker://${registry.host}/vm/fedora:41`, '-o', out, '--user', USER, '--password', PASSWORD, '--ca-cert', certDir, '-q'], {
        env: { https_proxy: proxy.url, HTTPS_PROXY: proxy.url, no_proxy: '', NO_PROXY: '' },
      });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await sha256File(out), sha);
      assert.match(proxy.log(), new RegExp(`CONNECT.*127\\.0\\.0\\.1:${registry.port}`));
    } finally {
      await proxy.stop();
    }
  });

  test('wrong password: access denied naming the user, never the password', async () => {
    const result = await cli([`docker://${registry.host}/vm/fedora:41`, '--user', USER, '--password', 'wrong-one', '--ca-cert', certDir]);
    assert.equal(result.code, 1);
    assert.equal(result.json.category, 'cannot-connect');
    assert.match(String(result.json.error), /access denied \(401 Unauthorized\) .* as user "alice"/);
    assert.ok(!result.stderr.includes('wrong-one'), result.stderr);
    assert.ok(!existsSync(result.out));
  });

  test('no credentials: access denied, asks for --user/--password', async () => {
    const result = await cli([`docker://${registry.host}/vm/fedora:41`, '--ca-cert', certDir]);
    assert.equal(result.code, 1);
    assert.equal(result.json.category, 'cannot-connect');
    assert.match(String(result.json.error), /access denied \(401 Unauthorized\) .*without credentials/);
  });

  test('Bearer token flow: token fetched from the realm with service, scope and Basic credentials', async () => {
    tokenRequests.length = 0;
    const result = await cli([`docker://${frontHost}/vm/fedora:41`, '--user', USER, '--password', PASSWORD, '--insecure']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(result.out), sha);
    assert.ok(tokenRequests.length >= 1);
    assert.deepEqual(tokenRequests[0], {
      authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`,
      service: 'front.test',
      scope: 'repository:vm/fedora:pull',
    });
  });

  test('a layer download cut after its token expired: the resume gets a new token and the disk is exact', async () => {
    tokenRequests.length = 0;
    cutBlobAndExpireToken = true;
    const result = await cli([`docker://${frontHost}/vm/fedora:41`, '--user', USER, '--password', PASSWORD, '--insecure']);
    assert.equal(cutBlobAndExpireToken, false, 'the blob download was cut');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await sha256File(result.out), sha);
    assert.ok(tokenRequests.length >= 2, 'a second token was fetched for the resume');
  });

  test('a registry that asks for a client certificate: NAME.cert and NAME.key in the CA directory, as in a certs.d directory', async () => {
    const mtlsDir = dir.join('mtls');
    mkdirSync(mtlsDir);
    const mtls = makeUploadCertificates(mtlsDir, 'cdi-importer');
    // The same storage (the image pushed above), served by a registry that wants client certificates.
    const strict = await startRegistry(dir, { tls: mtls.server, clientCa: mtls.caCert, storageDir: registry.storageDir });
    /** A CA directory holding `files` (name in it → file to copy). */
    const certDirOf = (name: string, files: Record<string, string>): string => {
      const made = dir.join(name);
      mkdirSync(made);
      for (const [inDir, from] of Object.entries(files)) cpSync(from, path.join(made, inDir));
      return made;
    };
    try {
      const withPair = certDirOf('mtls-certs', { 'ca.crt': mtls.caCert, 'client.cert': mtls.client.cert, 'client.key': mtls.client.key });
      const result = await cli([`docker://${strict.host}/vm/fedora:41`, '--ca-cert', withPair]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await sha256File(result.out), sha);

      // A pair that does not belong together is said, naming the files, before any connection.
      const mismatched = certDirOf('mtls-mismatched', { 'ca.crt': mtls.caCert, 'client.cert': mtls.client.cert, 'client.key': mtls.wrongName.key });
      const wrongKey = await cli([`docker://${strict.host}/vm/fedora:41`, '--ca-cert', mismatched]);
      assert.equal(wrongKey.code, 2, wrongKey.stderr);
      assert.match(String(wrongKey.json.error), /the client certificate \S*client\.cert and the key \S*client\.key do not belong together/);

      // A CA named .cert with no .key beside it is a CA, not half a client certificate.
      const caOnly = certDirOf('mtls-ca-only', { 'ca.cert': mtls.caCert });
      const refused = await cli([`docker://${strict.host}/vm/fedora:41`, '--ca-cert', caOnly]);
      assert.equal(refused.code, 1, 'no client certificate, no image');
      assert.doesNotMatch(String(refused.json.error), /has no key|unable to verify|self-signed|unknown (certificate )?authority/i, `the CA was used as a CA: ${String(refused.json.error)}`);
      assert.equal(existsSync(refused.out), false);
    } finally {
      await strict.stop();
    }
  });

  test('Bearer token flow without credentials (public image): an anonymous token', async () => {
    tokenRequests.length = 0;
    anonymousTokens = true;
    try {
      const result = await cli([`docker://${frontHost}/vm/fedora:41`, '--insecure']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await sha256File(result.out), sha);
      assert.equal(tokenRequests[0]?.authorization, undefined);
    } finally {
      anonymousTokens = false;
    }
    const refused = await cli([`docker://${frontHost}/vm/fedora:41`, '--insecure']);
    assert.equal(refused.code, 1);
    assert.match(String(refused.json.error), /access denied \(401 Unauthorized\) to http:\/\/127\.0\.0\.1:\d+\/token.*without credentials/);
  });

  test('Bearer token flow with a wrong password: the token service refuses, naming the user', async () => {
    const result = await cli([`docker://${frontHost}/vm/fedora:41`, '--user', USER, '--password', 'nope-nope', '--insecure']);
    assert.equal(result.code, 1);
    assert.equal(result.json.category, 'cannot-connect');
    assert.match(String(result.json.error), /access denied \(401 Unauthorized\) to http:\/\/127\.0\.0\.1:\d+\/token.* as user "alice"/);
    assert.ok(!result.stderr.includes('nope-nope'));
  });

  test('datavolume command: source.registry with secretRef and certConfigMap, grown to the requested storage', async () => {
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    const manifest = dir.join('dv-registry.yaml');
    writeFileSync(
      manifest,
      [
        'apiVersion: v1',
        'kind: Secret',
        'metadata:',
        '  name: registry-creds',
        'data:',
        `  accessKeyId: ${b64(USER)}`,
        `  secretKey: ${b64(PASSWORD)}`,
        '---',
        'apiVersion: cdi.kubevirt.io/v1beta1',
        'kind: DataVolume',
        'metadata:',
        '  name: fedora-from-registry',
        'spec:',
        '  source:',
        '    registry:',
        `      url: docker://${registry.host}/vm/fedora:41`,
        '      secretRef: registry-creds',
        '      certConfigMap: registry-ca',
        '  storage:',
        '    resources:',
        '      requests:',
        '        storage: 8Mi',
        '',
      ].join('\n'),
    );
    const out = dir.join('dv-out');
    const result = await runCli(['datavolume', manifest, '--secret', manifest, '--config-map', certDir, '--out', out, '-q']);
    assert.equal(result.code, 0, result.stderr);
    const image = dir.join('dv-out', 'fedora-from-registry.img');
    assert.equal(statSync(image).size, 8 * MiB);
    run('truncate', ['-s', String(3 * MiB), image]);
    assert.equal(await sha256File(image), sha);
  });

  test('pod mode: IMPORTER_SOURCE=registry with the cert dir and credentials; labels in the termination message', async () => {
    const root = makePodRoot();
    try {
      const result = await runPod(root, {
        IMPORTER_SOURCE: 'registry',
        IMPORTER_ENDPOINT: `docker://${registry.host}/vm/fedora:41`,
        IMPORTER_ACCESS_KEY_ID: USER,
        IMPORTER_SECRET_KEY: PASSWORD,
        IMPORTER_CERT_DIR: certDir,
        IMPORTER_CONTENTTYPE: 'kubevirt',
        PREALLOCATION: 'false',
        FILESYSTEM_OVERHEAD: '0',
      });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.json, {
        preallocationApplied: false,
        labels: { 'instancetype.kubevirt.io/default-preference': 'fedora' },
        message: 'Import Complete',
      });
      assert.equal(await sha256File(root.diskImage), sha);

      const denied = await runPod(root, {
        IMPORTER_SOURCE: 'registry',
        IMPORTER_ENDPOINT: `docker://${registry.host}/vm/fedora:41`,
        IMPORTER_ACCESS_KEY_ID: USER,
        IMPORTER_SECRET_KEY: 'bad-secret',
        IMPORTER_CERT_DIR: certDir,
        PREALLOCATION: 'false',
      });
      assert.equal(denied.code, 1);
      assert.match(denied.message ?? '', /^Unable to process data: failed to pull image: access denied \(401 Unauthorized\)/);
      assert.ok(!(denied.message ?? '').includes('bad-secret'));
    } finally {
      root.remove();
    }
  });
});
