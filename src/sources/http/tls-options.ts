/** TLS settings for HTTPS sources: system CAs plus the user's CA files or directories, TLS 1.2 at least. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { SecureContext } from 'node:tls';
import { fileProblem, oneLine, usageError } from '../../errors.js';

// node:tls and node:crypto load when TLS is used (17 ms of a plain-http import's start otherwise).
const require = createRequire(import.meta.url);
const tls = () => require('node:tls') as typeof import('node:tls');
const crypto = () => require('node:crypto') as typeof import('node:crypto');

export interface TlsConnectOptions {
  ca?: string[];
  /** A client certificate and its key, for servers that ask for one. */
  cert?: string;
  key?: string;
  minVersion: 'TLSv1.2';
  rejectUnauthorized: boolean;
  /**
   * With the user's CAs: a certificate among them ends the chain even if it is not a root (the
   * server's own certificate, or an intermediate, as `openssl s_client -showcerts` prints first),
   * as curl (OpenSSL's partial chains) and Go (CDI) accept it.
   */
  allowPartialTrustChain?: boolean;
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
function loadCaCertificates(caPaths: readonly string[]): string[] {
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
 * Trusted: the system's CAs (Node's bundled store on a machine without one) plus the user's.
 * Node replaces its default store when `ca` is given, so the list always starts with the
 * public ones.
 */
export function tlsConnectOptions(extraCaPaths: readonly string[] = [], insecure = false, env: NodeJS.ProcessEnv = process.env): TlsConnectOptions {
  const system = systemCaCertificates(env);
  const extra = loadCaCertificates(extraCaPaths);
  const client = clientCertificate(extraCaPaths);
  return {
    ...(system || extra.length > 0 ? { ca: [...(system ?? tls().rootCertificates), ...nodeExtraCaCertificates(env), ...extra] } : {}),
    ...client,
    ...(extra.length > 0 ? { allowPartialTrustChain: true } : {}),
    minVersion: 'TLSv1.2',
    rejectUnauthorized: !insecure,
  };
}

/**
 * Where OpenSSL (curl's) and Go's x509.SystemCertPool (CDI's clients) find the system's CA
 * bundle on Linux: Debian/Ubuntu, Fedora/RHEL, openSUSE, OpenELEC, CentOS/RHEL 7, Alpine.
 */
const SYSTEM_CA_FILES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/pki/tls/cacert.pem',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/cert.pem',
];

/**
 * The CAs this machine trusts, read as curl and CDI (Go) read them: `SSL_CERT_FILE` when set,
 * otherwise the distribution's bundle; plus the files of `SSL_CERT_DIR` (colon-separated). So a
 * corporate CA added with update-ca-certificates (or to a derived image) is trusted without
 * `--ca-cert`, and a CA the administrator removed is not. An `SSL_CERT_FILE` that cannot be read
 * or holds none trusts nothing from it, as for Go and curl (sslCertFileProblem says why when a
 * certificate then cannot be verified). Undefined when the machine has no bundle (a distroless
 * image): Node's own copy of the Mozilla store is used then.
 */
function systemCaCertificates(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const certificates: string[] = [];
  if (env.SSL_CERT_FILE) {
    certificates.push(...(certificatesOf(env.SSL_CERT_FILE) ?? [])); // unreadable: trusts nothing from it
  } else {
    for (const file of SYSTEM_CA_FILES) {
      const bundle = certificatesOf(file); // undefined: not this distribution's path
      if (!bundle) continue;
      certificates.push(...bundle);
      break;
    }
  }
  for (const dir of (env.SSL_CERT_DIR ?? '').split(':').filter(Boolean)) {
    try {
      certificates.push(...loadCaCertificates([dir]));
    } catch {
      // a missing directory adds nothing, as for OpenSSL and Go
    }
  }
  return certificates.length > 0 || env.SSL_CERT_FILE ? certificates : undefined;
}

/** What is wrong with `SSL_CERT_FILE`, if set and not a bundle of certificates: said with a certificate error. */
export function sslCertFileProblem(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = env.SSL_CERT_FILE;
  if (!file) return undefined;
  try {
    return certificatesIn(readFileSync(file, 'utf8')).length > 0 ? undefined : `SSL_CERT_FILE ${file} holds no PEM certificate`;
  } catch (err) {
    return `SSL_CERT_FILE ${file} cannot be read (${fileProblem(err)})`;
  }
}

/** The CAs Node adds from `NODE_EXTRA_CA_CERTS` to its default store, which an explicit `ca` list replaces. */
function nodeExtraCaCertificates(env: NodeJS.ProcessEnv): string[] {
  // Unreadable: Node itself warned at start.
  return (env.NODE_EXTRA_CA_CERTS && certificatesOf(env.NODE_EXTRA_CA_CERTS)) || [];
}

/** The PEM certificates in `file`; undefined when it cannot be read. */
function certificatesOf(file: string): string[] | undefined {
  try {
    return certificatesIn(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

const secureContexts = new WeakMap<TlsConnectOptions, SecureContext>();

/**
 * `options` with their SecureContext made once. Given only `ca`, every TLS connection would
 * parse the whole CA list again (~150 certificates: 20–40 ms of CPU per connection).
 */
export function withSecureContext(options: TlsConnectOptions): TlsConnectOptions & { secureContext: SecureContext } {
  let secureContext = secureContexts.get(options);
  if (!secureContext) {
    secureContext = tls().createSecureContext(options);
    secureContexts.set(options, secureContext);
  }
  return { ...options, secureContext };
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
        matches = new (crypto().X509Certificate)(pair.cert).checkPrivateKey(crypto().createPrivateKey(pair.key));
      } catch (err) {
        throw usageError(`cannot use the client certificate ${certFile} with the key ${keyFile} (PEM, unencrypted): ${oneLine(err)}`);
      }
      if (!matches) throw usageError(`the client certificate ${certFile} and the key ${keyFile} do not belong together`);
      return pair;
    }
  }
  return undefined;
}
