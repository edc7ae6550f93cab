/** HTTPS through a TLS proxy (a CONNECT proxy that itself speaks TLS), trusted with the proxy CA (`/proxycerts/`). */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ImportError } from '../../../src/errors.js';
import { HttpSource } from '../../../src/sources/http/index.js';
import { startNginx, type NginxServer } from '../../support/nginx.js';
import { makeTestCertificates, type TestCertificates } from '../../support/tls-ca.js';
import { makeTempDir, type TempDir } from '../../support/tools.js';
import { digestStream, quickTuning, randomContent, sha256 } from './helpers.js';

const content = randomContent(1024 * 1024 + 3);
let dir: TempDir;
let certs: TestCertificates;
let nginx: NginxServer;
let proxy: https.Server;
let proxyUrl: string;
const tunnels: string[] = [];

before(async () => {
  dir = makeTempDir();
  mkdirSync(dir.join('www'));
  writeFileSync(dir.join('www', 'disk.img'), content);
  certs = makeTestCertificates(dir.path);
  nginx = await startNginx({ root: dir.join('www'), certificates: certs });
  proxy = https.createServer({ cert: readFileSync(certs.valid.cert), key: readFileSync(certs.valid.key) });
  proxy.on('connect', (req, client: net.Socket, head: Buffer) => {
    tunnels.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const upstream = net.connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});
after(async () => {
  proxy?.closeAllConnections();
  await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
  await nginx?.stop();
  dir?.remove();
});

describe('TLS proxy', () => {
  it('tunnels through an HTTPS proxy trusted with the proxy CA', async () => {
    const source = new HttpSource(`${nginx.https}disk.img`, { caPaths: [certs.caCert], proxyCaPaths: [certs.caCert] }, { ...quickTuning, env: { https_proxy: proxyUrl } });
    const opened = await source.open(new AbortController().signal);
    await opened.randomAccess?.close();
    assert.equal((await digestStream(opened.stream)).sha256, sha256(content));
    assert.ok(tunnels.includes(`127.0.0.1:${new URL(nginx.https!).port}`));
  });

  it('trusts the proxy CA for the origin too (a TLS-intercepting proxy re-signs it)', async () => {
    const source = new HttpSource(`${nginx.https}disk.img`, { proxyCaPaths: [certs.caCert] }, { ...quickTuning, env: { https_proxy: proxyUrl } });
    const opened = await source.open(new AbortController().signal);
    await opened.randomAccess?.close();
    assert.equal((await digestStream(opened.stream)).sha256, sha256(content));
  });

  it('fails clearly when the proxy certificate is not trusted', async () => {
    const source = new HttpSource(`${nginx.https}disk.img`, { caPaths: [certs.caCert] }, { ...quickTuning, env: { https_proxy: proxyUrl } });
    await assert.rejects(source.open(new AbortController().signal), (err: ImportError) => {
      assert.equal(err.category, 'cannot-connect');
      assert.match(err.message, /unknown certificate authority.*or the certificate is the TLS proxy 127\.0\.0\.1:\d+'s: trust its CA as a proxy CA/);
      return true;
    });
  });
});
