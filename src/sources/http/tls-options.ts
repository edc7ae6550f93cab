/** TLS settings for HTTPS sources: system CAs plus the user's CA files or directories, TLS 1.2 at least. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { fileProblem, oneLine, usageError } from '../../errors.js';

export interface TlsConnectOptions {
  ca?: string[];
  /** A client certificate and its key, for servers that ask for one. */
  cert?: string;
  key?: string;
  minVersion: 'TLSv1.2';
  rejectUnauthorized: boolean;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The PEM certificate blocks in `text`. */
export function certificatesIn(text: string): string[] {
  return text.match(PEM_CERTIFICATE) ?? [];
}

/**
 * Every PEM certificate in the given files and directories. Directory entries that are not
 * PEM certificates are skipped (a Kubernetes ConfigMap mount holds `..data` links and
 * sometimes other keys); a file named explicitly must hold at least one certificate.
 */
export function loadCaCertificates(caPaths: readonly string[]): string[] {
  const certificates: string[] = [];
  for (const caPath of caPaths) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(caPath).isDirectory();
    } catch (err) {
      throw usageError(`cannot read CA certificate path ${caPath}: ${fileProblem(err)}; give a PEM file or a directory of them`);
    }
    if (isDirectory) {
      for (const name of readdirSync(caPath).sort()) {
        if (name.startsWith('.')) continue;
        const file = path.join(caPath, name);
        try {
          if (!statSync(file).isFile()) continue;
          certificates.push(...certificatesIn(readFileSync(file, 'utf8')));
        } catch {
          // unreadable or dangling entry in a mounted directory: not a CA we can use
        }
      }
    } else {
      const found = certificatesIn(readFileSync(caPath, 'utf8'));
      if (found.length === 0) throw usageError(`no PEM certificate found in CA file ${caPath}`);
      certificates.push(...found);
    }
  }
  return certificates;
}

/**
 * Node replaces its default trust store when `ca` is given, so extra CAs are appended to
 * `tls.rootCertificates` to keep trusting the public ones too.
 */
export function tlsConnectOptions(extraCaPaths: readonly string[] = [], insecure = false): TlsConnectOptions {
  const extra = loadCaCertificates(extraCaPaths);
  const client = clientCertificate(extraCaPaths);
  return {
    ...(extra.length > 0 ? { ca: [...rootCertificates, ...extra] } : {}),
    ...client,
    minVersion: 'TLSv1.2',
    rejectUnauthorized: !insecure,
  };
}

/**
 * A client certificate in a CA directory, as containers/image (CDI's registry client) reads a
 * certs.d directory: `NAME.cert` with its key in `NAME.key`. The first pair by name is used; a
 * `.cert` without a key is only a CA.
 */
function clientCertificate(paths: readonly string[]): { cert: string; key: string } | undefined {
  for (const dir of paths) {
    let names: string[];
    try {
      if (!statSync(dir).isDirectory()) continue;
      names = readdirSync(dir).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      if (!name.endsWith('.cert') || name.startsWith('.')) continue;
      const keyName = `${name.slice(0, -'.cert'.length)}.key`;
      // Without its key it is a CA that happens to be named .cert (CDI's HTTP source reads it so).
      if (!names.includes(keyName)) continue;
      const certFile = path.join(dir, name);
      const keyFile = path.join(dir, keyName);
      let pair: { cert: string; key: string };
      try {
        pair = { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
      } catch (err) {
        throw usageError(`cannot read the client certificate ${certFile} or its key: ${fileProblem(err)}`);
      }
      // Checked here, by name: OpenSSL's own complaint at the first connection names no file.
      let matches: boolean;
      try {
        matches = new X509Certificate(pair.cert).checkPrivateKey(createPrivateKey(pair.key));
      } catch (err) {
        throw usageError(`cannot use the client certificate ${certFile} with the key ${keyFile} (PEM, unencrypted): ${oneLine(err)}`);
      }
      if (!matches) throw usageError(`the client certificate ${certFile} and the key ${keyFile} do not belong together`);
      return pair;
    }
  }
  return undefined;
}
