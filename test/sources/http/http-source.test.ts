/** The HTTP source against real nginx (HTTP, Basic auth, HTTPS with a test CA) and tinyproxy. */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import type { ImportError } from '../../../src/errors.js';
import { HttpSource } from '../../../src/sources/http/index.js';
import { DirectRangeClient } from '../../../src/sources/http/direct-range-client.js';
import { transportError } from '../../../src/sources/http/http-errors.js';
import { tlsConnectOptions } from '../../../src/sources/http/tls-options.js';
import type { TransportOptions } from '../../../src/request.js';
import { freePort } from '../../support/free-port.js';
import { startNginx, type NginxServer } from '../../support/nginx.js';
import { makeTestCertificates, type TestCertificates } from '../../support/tls-ca.js';
import { startTinyproxy, type TinyproxyServer } from '../../support/tinyproxy.js';
import { makeTempDir, type TempDir } from '../../support/tools.js';
import { digestStream, quickTuning, randomContent, sha256 } from './helpers.js';

const content = randomContent(2 * 1024 * 1024 + 777);
const expected = sha256(content);
const user = { username: 'alice', password: 'pa55-word' };
let dir: TempDir;
let certs: TestCertificates;
let nginx: NginxServer;
let proxy: TinyproxyServer;

before(async () => {
  dir = makeTempDir();
  mkdirSync(dir.join('www'));
  writeFileSync(dir.join('www', 'disk.img'), content);
  // A name of its own for the random-access test, whose request counts must not see the late log
  // lines of earlier tests' abandoned downloads of disk.img.
  writeFileSync(dir.join('www', 'random-access.img'), content);
  certs = makeTestCertificates(dir.path);
  nginx = await startNginx({ root: dir.join('www'), auth: user, certificates: certs });
  proxy = await startTinyproxy();
});
after(async () => {
  await nginx?.stop();
  await proxy?.stop();
  dir?.remove();
});

async function fetchAll(url: string, transport: TransportOptions = {}, env: NodeJS.ProcessEnv = {}) {
  const source = new HttpSource(url, transport, { ...quickTuning, env });
  const opened = await source.open(new AbortController().signal);
  await opened.randomAccess?.close();
  return { opened, digest: await digestStream(opened.stream) };
}

async function failure(url: string, transport: TransportOptions = {}, env: NodeJS.ProcessEnv = {}): Promise<ImportError> {
  try {
    await fetchAll(url, transport, env);
  } catch (err) {
    const error = err as ImportError;
    assert.equal(error.category, 'cannot-connect');
    assert.doesNotMatch(error.message, /\n/);
    assert.doesNotMatch(error.message, new RegExp(user.password));
    return error;
  }
  assert.fail(`expected ${url} to fail`);
}

describe('HttpSource against nginx', () => {
  it('downloads over plain HTTP', async () => {
    const { opened, digest } = await fetchAll(`${nginx.http}disk.img`);
    assert.equal(digest.sha256, expected);
    assert.equal(opened.size, content.length);
  });

  it('downloads with Basic auth', async () => {
    const { digest } = await fetchAll(`${nginx.http}auth/disk.img`, { auth: user });
    assert.equal(digest.sha256, expected);
  });

  it('takes credentials written into the URL, and hides them from the description', async () => {
    const url = `${nginx.http.replace('://', `://${user.username}:${user.password}@`)}auth/disk.img`;
    assert.doesNotMatch(new HttpSource(url, {}).description, /pa55/);
    const { digest } = await fetchAll(url);
    assert.equal(digest.sha256, expected);
  });

  it('says which user was refused on a wrong password', async () => {
    const error = await failure(`${nginx.http}auth/disk.img`, { auth: { username: 'alice', password: 'wrong' } });
    assert.match(error.message, /access denied \(401 Unauthorized\) .* as user "alice"/);
    assert.doesNotMatch(error.message, /wrong/);
    // A Secret made with `echo user | base64`: the newline shows, and what probably put it there.
    const newline = await failure(`${nginx.http}auth/disk.img`, { auth: { username: 'alice\n', password: 'wrong' } });
    assert.match(newline.message, /as user "alice\\n" \(it has white space at an end: was the Secret made with `echo` instead of `echo -n`\?\); check/);
    assert.equal(newline.message.split('\n').length, 1);
  });

  it('a wrong Authorization header given with --header is said to be that, not "without credentials" (found by a QA pass)', async () => {
    const wrong = `Basic ${Buffer.from('alice:not-it').toString('base64')}`;
    const error = await failure(`${nginx.http}auth/disk.img`, { headers: [`Authorization: ${wrong}`] });
    assert.match(error.message, /401 Unauthorized.*with the Authorization header given with --header; check its value/);
    assert.doesNotMatch(error.message, new RegExp(wrong.slice(6)));
  });

  it('says no credentials were sent when none were given', async () => {
    const error = await failure(`${nginx.http}auth/disk.img`);
    assert.match(error.message, /401 Unauthorized.*without credentials; pass --user and --password/);
  });

  it('reports 404 with the CDI phrase, then what to do; query values (a presigned URL\'s signature) are not shown', async () => {
    const error = await failure(`${nginx.http}missing.img?X-Amz-Signature=s3cr3t&token=t0k3n`);
    assert.match(
      error.message,
      /^expected status code 200, got 404\. Status: 404 Not Found \(http:\/\/127\.0\.0\.1:\d+\/missing\.img\?X-Amz-Signature=\*\*\*&token=\*\*\*\); check the URL: the server has no file at that path$/,
    );
    assert.doesNotMatch(error.message, /s3cr3t|t0k3n/);
  });

  it('an http:// URL for a port that speaks HTTPS: the 400 nginx answers, and the hint to use https://', async () => {
    const error = await failure(`${nginx.https!.replace(/^https:/, 'http:')}disk.img`);
    assert.match(error.message, /^expected status code 200, got 400\. Status: 400 Bad Request \(http:\/\/[^)]+\); if that port serves HTTPS, use an https:\/\/ URL$/);
  });

  it('downloads over HTTPS with the server\'s own certificate given as --ca-cert (a partial chain, as curl and Go accept)', async () => {
    // Found by a QA pass: users pass the first certificate `openssl s_client -showcerts` prints.
    assert.doesNotMatch(readFileSync(certs.valid.cert, 'utf8'), /BEGIN CERTIFICATE[\s\S]*BEGIN CERTIFICATE/, 'the leaf alone');
    const { digest } = await fetchAll(`${nginx.https}disk.img`, { caPaths: [certs.valid.cert] });
    assert.equal(digest.sha256, expected);
    // Still checked: another server's certificate is no CA of this one.
    const error = await failure(`${nginx.https}disk.img`, { caPaths: [certs.expired.cert] });
    assert.match(error.message, /unknown certificate authority/);
  });

  it('downloads over HTTPS with the CA given as a file', async () => {
    const { digest } = await fetchAll(`${nginx.https}disk.img`, { caPaths: [certs.caCert] });
    assert.equal(digest.sha256, expected);
  });

  it('downloads over HTTPS with the CA in a directory (a certConfigMap mount)', async () => {
    const caDir = dir.join('certs');
    mkdirSync(caDir);
    copyFileSync(certs.caCert, `${caDir}/ca.pem`);
    writeFileSync(`${caDir}/README`, 'not a certificate');
    writeFileSync(`${caDir}/.hidden`, readFileSync(certs.caCert));
    const { digest } = await fetchAll(`${nginx.https}disk.img`, { caPaths: [caDir] });
    assert.equal(digest.sha256, expected);
  });

  it('downloads over HTTPS with Basic auth', async () => {
    const { digest } = await fetchAll(`${nginx.https}auth/disk.img`, { caPaths: [certs.caCert], auth: user });
    assert.equal(digest.sha256, expected);
  });

  it('suggests --ca-cert when the CA is unknown', async () => {
    const error = await failure(`${nginx.https}disk.img`);
    assert.match(error.message, /unknown certificate authority; trust its CA with --ca-cert/);
  });

  it('says when an https:// URL reaches a plain-HTTP port', async () => {
    const error = await failure(nginx.http.replace('http:', 'https:') + 'disk.img');
    assert.match(error.message, /the server does not speak TLS on this port; if it serves plain HTTP, use an http:\/\/ URL/);
    assert.doesNotMatch(error.message, /ssl3_get_record|openssl/i);
  });

  it('says the certificate expired', async () => {
    const error = await failure(`${nginx.expiredHttps}disk.img`, { caPaths: [certs.caCert] });
    assert.match(error.message, /certificate of 127\.0\.0\.1:\d+ has expired/);
  });

  it('says the certificate does not match the host name', async () => {
    const error = await failure(`${nginx.wrongHostHttps}disk.img`, { caPaths: [certs.caCert] });
    assert.match(error.message, /does not match the host name 127\.0\.0\.1/);
  });

  it('says a server that speaks only TLS older than 1.2 is refused, not OpenSSL\'s internals', async () => {
    // nginx on Debian's OpenSSL will not offer TLS 1.1; a Node server at security level 0 will.
    const old = tls.createServer(
      { key: readFileSync(certs.valid.key), cert: readFileSync(certs.valid.cert), minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' },
      (socket) => socket.end(),
    );
    await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = old.address() as import('node:net').AddressInfo;
      const error = await failure(`https://127.0.0.1:${port}/disk.img`, { caPaths: [certs.caCert] });
      assert.match(error.message, /TLS handshake with 127\.0\.0\.1:\d+ failed: the server offers only TLS versions older than 1\.2/);
      assert.doesNotMatch(error.message, /deps\/openssl|SSL routines/);
    } finally {
      old.close();
    }
  });

  it('skips verification with insecure', async () => {
    const { digest } = await fetchAll(`${nginx.expiredHttps}disk.img`, { insecure: true });
    assert.equal(digest.sha256, expected);
  });

  it('rejects a CA file that holds no certificate', async () => {
    writeFileSync(dir.join('not-a-ca.pem'), 'hello');
    await assert.rejects(fetchAll(`${nginx.https}disk.img`, { caPaths: [dir.join('not-a-ca.pem')] }), /no PEM certificate found in CA file/);
  });

  it('reports connection refused and DNS failures', async () => {
    const closedPort = await freePort();
    assert.match((await failure(`http://127.0.0.1:${closedPort}/disk.img`)).message, /connection refused by 127\.0\.0\.1:\d+/);
    assert.match((await failure('http://no-such-host.invalid/disk.img')).message, /cannot resolve host name no-such-host\.invalid/);
  });

  it('goes through http_proxy for plain HTTP', async () => {
    const { digest } = await fetchAll(`${nginx.http}auth/disk.img`, { auth: user }, { http_proxy: proxy.url });
    assert.equal(digest.sha256, expected);
    assert.match(proxy.log(), /GET http:\/\/127\.0\.0\.1:\d+\/auth\/disk\.img/);
  });

  it('tunnels HTTPS through HTTPS_PROXY with CONNECT', async () => {
    const { digest } = await fetchAll(`${nginx.https}disk.img`, { caPaths: [certs.caCert] }, { HTTPS_PROXY: proxy.url });
    assert.equal(digest.sha256, expected);
    assert.match(proxy.log(), new RegExp(`CONNECT 127\\.0\\.0\\.1:${new URL(nginx.https!).port}`));
  });

  it('takes a proxy given without a scheme (host:port) as an http:// one, as curl and CDI do', async () => {
    const before = proxy.log().length;
    const { digest } = await fetchAll(`${nginx.http}disk.img`, {}, { http_proxy: proxy.url.replace(/^http:\/\//, '') });
    assert.equal(digest.sha256, expected);
    assert.match(proxy.log().slice(before), /GET http:\/\/127\.0\.0\.1:\d+\/disk\.img/);
  });

  it('bypasses the proxy for no_proxy hosts and CIDR ranges, and does not use http_proxy for https', async () => {
    const before = proxy.log().length;
    const noProxy = await fetchAll(`${nginx.http}disk.img`, {}, { http_proxy: proxy.url, no_proxy: 'localhost,127.0.0.1' });
    assert.equal(noProxy.digest.sha256, expected);
    const cidr = await fetchAll(`${nginx.http}disk.img`, {}, { HTTP_PROXY: proxy.url, NO_PROXY: '.svc,127.0.0.0/8' });
    assert.equal(cidr.digest.sha256, expected);
    const httpsDirect = await fetchAll(`${nginx.https}disk.img`, { caPaths: [certs.caCert] }, { http_proxy: proxy.url });
    assert.equal(httpsDirect.digest.sha256, expected);
    assert.doesNotMatch(proxy.log().slice(before), /disk\.img|CONNECT/);
  });

  it('says the proxy refused to tunnel', async () => {
    const strict = await startTinyproxy({ connectPorts: [443] });
    try {
      const error = await failure(`${nginx.https}disk.img`, { caPaths: [certs.caCert] }, { https_proxy: strict.url });
      assert.match(error.message, /the proxy 127\.0\.0\.1:\d+ refused to connect to 127\.0\.0\.1:\d+: 403 Forbidden/);
    } finally {
      await strict.stop();
    }
  });

  it('a proxy that asks for credentials: named, with the variable to put them in; with them in the URL, it goes through', async () => {
    const guarded = await startTinyproxy({ basicAuth: { user: 'puser', password: 'Pr0xyPa55' } });
    try {
      // Found by a QA pass: for plain http the line named neither the proxy nor http_proxy.
      const error = await failure(`${nginx.http}disk.img`, {}, { http_proxy: guarded.url });
      assert.match(error.message, /the proxy 127\.0\.0\.1:\d+ asks for credentials \(407 Proxy Authentication Required\) for 127\.0\.0\.1:\d+: put them in http_proxy/);
      const tunnel = await failure(`${nginx.https}disk.img`, { caPaths: [certs.caCert] }, { https_proxy: guarded.url });
      assert.match(tunnel.message, /the proxy 127\.0\.0\.1:\d+ (asks for credentials \(407|refused to connect to .*407)/);
      const { digest } = await fetchAll(`${nginx.http}disk.img`, {}, { http_proxy: guarded.url.replace('http://', 'http://puser:Pr0xyPa55@') });
      assert.equal(digest.sha256, expected);
    } finally {
      await guarded.stop();
    }
  });

  it('says the proxy refused the connection', async () => {
    const closedPort = await freePort();
    const error = await failure(`${nginx.http}disk.img`, {}, { http_proxy: `http://127.0.0.1:${closedPort}` });
    assert.match(error.message, /connection refused by the proxy 127\.0\.0\.1:\d+/);
  });
});

describe('HttpSource random access over Range', () => {
  it('reads any range, with few requests thanks to the block cache', async () => {
    const source = new HttpSource(`${nginx.http}random-access.img`, {}, quickTuning);
    // The probe (bytes=0-65535) is left out: nginx logs it when its connection closes, which may
    // come after `before` is taken, and would then count as a read's request.
    const requests = () => nginx.requests().filter((r) => r.uri === '/random-access.img' && r.range !== 'bytes=0-65535');
    const opened = await source.open(new AbortController().signal);
    opened.stream.destroy();
    const reader = opened.randomAccess!;
    assert.equal(reader.size, content.length);
    const before = requests().length;
    // Small metadata-like reads: the first 64 KiB came with the probe, another block is one request.
    for (const [offset, length] of [[0, 72], [72, 8], [512, 4096], [65000, 536]] as const) {
      assert.deepEqual(await reader.read(offset, length), content.subarray(offset, offset + length));
    }
    assert.equal(requests().length - before, 0);
    for (const [offset, length] of [[700_000, 16], [700_100, 8], [700_000 + 1000, 512]] as const) {
      assert.deepEqual(await reader.read(offset, length), content.subarray(offset, offset + length));
    }
    assert.equal(requests().length - before, 1);
    // Sequential cluster reads across the file: read-ahead keeps requests far below one per cluster.
    const start = requests().length;
    for (let offset = 65536; offset < content.length; offset += 65536) {
      const data = await reader.read(offset, 65536);
      assert.deepEqual(data, content.subarray(offset, offset + 65536));
    }
    const ranged = requests().slice(start);
    assert.ok(ranged.length <= 8, `${ranged.length} requests for ${Math.ceil(content.length / 65536)} clusters`);
    assert.ok(ranged.every((r) => r.status === 206 && r.range.startsWith('bytes=')));
    // Past the end: short, then empty.
    assert.equal((await reader.read(content.length - 10, 100)).length, 10);
    assert.equal((await reader.read(content.length + 10, 100)).length, 0);
    await reader.close();
  });

  it('reads ranges over HTTPS on its own sockets, verifying certificates as the first request did', async () => {
    const signal = new AbortController().signal;
    const read = async (base: string | undefined, tlsOptions: ReturnType<typeof tlsConnectOptions>) => {
      const client = new DirectRangeClient(() => tlsOptions);
      const url = new URL(`${base}disk.img`);
      try {
        const answer = await client.read(url, { range: 'bytes=1000-1999999' }, 1000, 1_999_000, undefined, 5000, signal);
        assert.equal(sha256(answer.data!), sha256(content.subarray(1000, 2_000_000)));
        return 'ok';
      } catch (err) {
        return transportError(err, url).message;
      } finally {
        client.close();
      }
    };
    assert.equal(await read(nginx.https, tlsConnectOptions([certs.caCert])), 'ok');
    assert.equal(await read(nginx.expiredHttps, tlsConnectOptions([], true)), 'ok');
    assert.match(await read(nginx.https, tlsConnectOptions([])), /unknown certificate authority; trust its CA with --ca-cert/);
    assert.match(await read(nginx.expiredHttps, tlsConnectOptions([certs.caCert])), /has expired/);
    assert.match(await read(nginx.wrongHostHttps, tlsConnectOptions([certs.caCert])), /does not match the host name 127\.0\.0\.1/);
  });

  it('sends credentials with Range requests to the protected location', async () => {
    const source = new HttpSource(`${nginx.https}auth/disk.img`, { auth: user, caPaths: [certs.caCert] }, quickTuning);
    const opened = await source.open(new AbortController().signal);
    opened.stream.destroy();
    assert.deepEqual(await opened.randomAccess!.read(1_000_000, 5000), content.subarray(1_000_000, 1_005_000));
    await opened.randomAccess!.close();
  });
});
