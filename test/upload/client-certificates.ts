/**
 * Client certificates for the upload server tests, signed by the throwaway CA of
 * test/support/tls-ca.ts (whose key it leaves in the same directory), plus one from a CA the
 * server does not trust.
 */
import path from 'node:path';
import { run } from '../support/tools.js';
import { makeTestCertificates, type KeyPair } from '../support/tls-ca.js';

export interface UploadCertificates {
  caCert: string;
  server: KeyPair;
  /** CN = the expected client name. */
  client: KeyPair;
  /** Signed by the same CA, but for another CN: the server answers 401. */
  wrongName: KeyPair;
  /** The expected CN, but from an unknown CA: the TLS handshake fails. */
  untrusted: KeyPair;
}

function clientCertificate(dir: string, name: string, cn: string, caCert: string, caKey: string): KeyPair {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.crt`);
  const ext = path.join(dir, `${name}.ext`);
  run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`]);
  run('bash', ['-c', `printf 'extendedKeyUsage = clientAuth\\nbasicConstraints = CA:FALSE\\n' > '${ext}'`]);
  run('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', cert]);
  return { cert, key };
}

export function makeUploadCertificates(dir: string, clientName: string): UploadCertificates {
  const ca = makeTestCertificates(dir);
  const caKey = path.join(dir, 'ca.key');
  const otherKey = path.join(dir, 'other-ca.key');
  const otherCert = path.join(dir, 'other-ca.crt');
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', otherKey, '-out', otherCert, '-days', '2', '-subj', '/CN=untrusted test CA']);
  return {
    caCert: ca.caCert,
    server: ca.valid,
    client: clientCertificate(dir, 'client', clientName, ca.caCert, caKey),
    wrongName: clientCertificate(dir, 'client-wrong', 'somebody-else', ca.caCert, caKey),
    untrusted: clientCertificate(dir, 'client-untrusted', clientName, otherCert, otherKey),
  };
}
