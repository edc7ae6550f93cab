/**
 * The metric endpoint's certificate, made with node:crypto alone: OpenSSL must read it as a valid
 * self-signed certificate for its key, and a TLS client must be able to connect with it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { selfSignedCertificate } from '../../src/pod/self-signed-certificate.js';
import { makeTempDir, run } from '../support/tools.js';

test('openssl reads it as a self-signed P-256 certificate for its key, valid from now for a year', () => {
  const { key, cert } = selfSignedCertificate('cdi-importer');
  const dir = makeTempDir();
  try {
    writeFileSync(dir.join('cert.pem'), cert);
    writeFileSync(dir.join('key.pem'), key);
    // Its own signature checks out with its own key as the issuer's.
    assert.match(run('openssl', ['verify', '-CAfile', dir.join('cert.pem'), dir.join('cert.pem')]), /cert\.pem: OK/);
    const text = run('openssl', ['x509', '-in', dir.join('cert.pem'), '-noout', '-text']);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(text, /Subject: CN ?= ?cdi-importer/);
    assert.match(text, /ASN1 OID: prime256v1/);
    // The key that goes with it.
    const publicKeyOf = (file: string, kind: 'x509' | 'pkey') =>
      run('openssl', kind === 'x509' ? ['x509', '-in', file, '-noout', '-pubkey'] : ['pkey', '-in', file, '-pubout']);
    assert.equal(publicKeyOf(dir.join('cert.pem'), 'x509'), publicKeyOf(dir.join('key.pem'), 'pkey'));
  } finally {
    dir.remove();
  }
  const parsed = new X509Certificate(cert);
  assert.ok(parsed.checkPrivateKey(createPrivateKey(key)));
  assert.ok(Math.abs(Date.parse(parsed.validFrom) - (Date.now() - 60_000)) < 5_000, parsed.validFrom);
  assert.ok(Math.abs(Date.parse(parsed.validTo) - (Date.now() + 365 * 86_400_000)) < 5_000, parsed.validTo);
});

test('two certificates differ (own key, own serial), and an HTTPS server serves with one', async () => {
  const first = selfSignedCertificate('cdi-importer');
  const second = selfSignedCertificate('cdi-importer');
  assert.notEqual(new X509Certificate(first.cert).serialNumber, new X509Certificate(second.cert).serialNumber);
  assert.notEqual(first.key, second.key);
  const server = https.createServer({ ...first, minVersion: 'TLSv1.2' }, (_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, rejectUnauthorized: false }, (res) => {
          let text = '';
          res.on('data', (chunk) => (text += chunk)).on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    assert.equal(body, 'ok');
  } finally {
    server.close();
  }
});
