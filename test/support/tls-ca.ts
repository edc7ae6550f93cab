/**
 * A throwaway certificate authority made by openssl at test time, and server certificates
 * signed by it: valid for 127.0.0.1/localhost, expired, and issued for another host name.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { run } from './tools.js';

export interface KeyPair {
  cert: string;
  key: string;
}

export interface TestCertificates {
  /** PEM file of the CA that signed every certificate below. */
  caCert: string;
  /** Valid now, for IP 127.0.0.1 and DNS localhost. */
  valid: KeyPair;
  /** For 127.0.0.1 too, but expired in 2020. */
  expired: KeyPair;
  /** Valid now, but only for `wrong.example`. */
  wrongHost: KeyPair;
}

function signingRequest(dir: string, name: string): { key: string; csr: string } {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  return { key, csr };
}

/** Writes the CA and certificates into `dir` (a test's temp dir). */
export function makeTestCertificates(dir: string): TestCertificates {
  const caKey = path.join(dir, 'ca.key');
  const caCert = path.join(dir, 'ca.crt');
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', '/CN=cdi-importer test CA']);

  // `openssl ca` is the one signer in OpenSSL 3.0 that takes explicit validity dates (for the expired one).
  writeFileSync(path.join(dir, 'index.txt'), '');
  writeFileSync(path.join(dir, 'serial'), '1000\n');
  const config = path.join(dir, 'ca.cnf');
  writeFileSync(
    config,
    [
      '[ca]',
      'default_ca = test_ca',
      '[test_ca]',
      `dir = ${dir}`,
      'database = $dir/index.txt',
      'serial = $dir/serial',
      'new_certs_dir = $dir',
      `certificate = ${caCert}`,
      `private_key = ${caKey}`,
      'default_md = sha256',
      'policy = any',
      'unique_subject = no',
      'copy_extensions = none',
      '[any]',
      'commonName = supplied',
      '[local]',
      'subjectAltName = IP:127.0.0.1,DNS:localhost',
      'basicConstraints = CA:FALSE',
      'extendedKeyUsage = serverAuth',
      '[wrong]',
      'subjectAltName = DNS:wrong.example',
      'basicConstraints = CA:FALSE',
      'extendedKeyUsage = serverAuth',
      '',
    ].join('\n'),
  );
  const issue = (name: string, extensions: string, dates: string[]): KeyPair => {
    const { key, csr } = signingRequest(dir, name);
    const cert = path.join(dir, `${name}.crt`);
    run('openssl', ['ca', '-batch', '-notext', '-config', config, '-extensions', extensions, ...dates, '-in', csr, '-out', cert]);
    return { cert, key };
  };
  return {
    caCert,
    valid: issue('valid', 'local', ['-days', '2']),
    expired: issue('expired', 'local', ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z']),
    wrongHost: issue('wrong-host', 'wrong', ['-days', '2']),
  };
}
