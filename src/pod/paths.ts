/**
 * The volume paths of CDI's importer pod (SPEC §4.2). `CDI_IMPORTER_ROOT` moves their common
 * root (tests run the real binary against a temporary directory); the defaults are CDI's.
 */
import path from 'node:path';

export const ROOT_ENV = 'CDI_IMPORTER_ROOT';

export interface PodPaths {
  root: string;
  /** Filesystem volume mount; archives extract here. */
  dataDir: string;
  /** Target file on a filesystem volume. */
  diskImage: string;
  /** Block volume device; its existence means block mode. */
  blockDevice: string;
  scratchDir: string;
  terminationLog: string;
  /** Secret extra headers: one directory per secret, one header per file. */
  extraHeadersDir: string;
  /** CA certificates for a TLS-intercepting proxy. */
  proxyCertsDir: string;
}

export function podPaths(env: NodeJS.ProcessEnv = process.env): PodPaths {
  const root = path.resolve(env[ROOT_ENV] || '/');
  const at = (...parts: string[]) => path.join(root, ...parts);
  return {
    root,
    dataDir: at('data'),
    diskImage: at('data', 'disk.img'),
    blockDevice: at('dev', 'cdi-block-volume'),
    scratchDir: at('scratch'),
    terminationLog: at('dev', 'termination-log'),
    extraHeadersDir: at('extraheaders'),
    proxyCertsDir: at('proxycerts'),
  };
}
