/**
 * A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with
 * its storage in a temp dir, optionally behind htpasswd Basic auth and TLS; and test images built
 * as OCI layouts here and pushed with `skopeo copy`, as users push them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, waitForPort } from './free-port.js';
import type { KeyPair } from './tls-ca.js';
import { run, sha256File, type TempDir } from './tools.js';

export interface TestRegistry {
  port: number;
  /** `127.0.0.1:PORT`, for docker:// references. */
  host: string;
  /** The registry's storage root (blobs under docker/registry/v2/blobs/sha256/xx/<hex>/data). */
  storageDir: string;
  /** skopeo flags that reach this registry (TLS off, credentials). */
  skopeoDestFlags: string[];
  blobFile(digest: string): string;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  basicAuth?: { user: string; password: string };
  tls?: KeyPair;
  /** With tls: only clients presenting a certificate signed by this CA get in. */
  clientCa?: string;
  /** Reuse this storage directory (an image pushed to an earlier registry stays there). */
  storageDir?: string;
}

export async function startRegistry(dir: TempDir, options: RegistryOptions = {}): Promise<TestRegistry> {
  const port = await freePort();
  const storageDir = options.storageDir ?? dir.join('registry-storage');
  mkdirSync(storageDir, { recursive: true });
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storageDir}`,
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  secret: cdi-importer-test',
  ];
  if (options.tls) lines.push('  tls:', `    certificate: ${options.tls.cert}`, `    key: ${options.tls.key}`);
  if (options.tls && options.clientCa) lines.push('    clientcas:', `      - ${options.clientCa}`);
  if (options.basicAuth) {
    const htpasswd = dir.join('htpasswd');
    writeFileSync(htpasswd, run('htpasswd', ['-Bbn', options.basicAuth.user, options.basicAuth.password]));
    lines.push('auth:', '  htpasswd:', '    realm: cdi-importer-test', `    path: ${htpasswd}`);
  }
  const config = dir.join(`registry-${port}.yml`);
  writeFileSync(config, lines.join('\n') + '\n');
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d) => (stderr += d));
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  await waitForPort(port, 10_000, () => (exited ? `docker-registry exited: ${stderr.trim()}` : undefined));
  const skopeoDestFlags = ['--dest-tls-verify=false'];
  if (options.basicAuth) skopeoDestFlags.push('--dest-creds', `${options.basicAuth.user}:${options.basicAuth.password}`);
  return {
    port,
    host: `127.0.0.1:${port}`,
    storageDir,
    skopeoDestFlags,
    blobFile: (digest) => {
      const hex = digest.replace(/^sha256:/, '');
      return path.join(storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    },
    stop: async () => {
      if (!exited) child.kill('SIGTERM');
      await exitedPromise;
    },
  };
}

export type LayerCompression = 'none' | 'gzip' | 'zstd';

export interface LayerSpec {
  /** A directory whose contents become the layer (create disk/…, .wh. files in it). */
  dir: string;
  compression?: LayerCompression;
  /** Entry names as `./disk/x` (tar -C dir .) rather than `disk/x`. */
  dotPrefix?: boolean;
  /** Pack files' holes as GNU tar's sparse entries: old GNU headers, or a PAX sparse version. */
  sparse?: 'gnu' | 'pax-0.0' | 'pax-0.1' | 'pax-1.0';
  /** The tar format (GNU tar's default otherwise); not with `sparse`. */
  format?: 'v7' | 'ustar';
}

export interface ImageSpec {
  layers: LayerSpec[];
  architecture?: string;
  /** false: the index entry names no platform (as script-built OCI layouts write it). */
  platformInIndex?: boolean;
  env?: string[];
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string };
}

const LAYER_TYPES: Record<LayerCompression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

/**
 * Writes an OCI image layout at `layoutDir` holding `images` under `tag`: one image manifest, or
 * an OCI index of them (one per architecture) when there are several. Returns the top digest.
 */
export async function writeOciLayout(layoutDir: string, tag: string, images: ImageSpec[]): Promise<string> {
  const blobs = path.join(layoutDir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const work = path.join(layoutDir, '..', `${path.basename(layoutDir)}-work`);
  mkdirSync(work, { recursive: true });
  let counter = 0;
  const blobFromFile = async (file: string, mediaType: string): Promise<Descriptor> => {
    const hex = await sha256File(file);
    copyFileSync(file, path.join(blobs, hex));
    return { mediaType, digest: `sha256:${hex}`, size: statSync(file).size };
  };
  const blobFromJson = async (value: unknown, mediaType: string): Promise<Descriptor> => {
    const file = path.join(work, `json-${counter++}`);
    writeFileSync(file, JSON.stringify(value));
    return blobFromFile(file, mediaType);
  };
  const manifests: Descriptor[] = [];
  for (const image of images) {
    const layerDescriptors: Descriptor[] = [];
    const diffIds: string[] = [];
    for (const layer of image.layers) {
      const tar = path.join(work, `layer-${counter++}.tar`);
      const entries = layer.dotPrefix ? ['.'] : run('ls', ['-A', layer.dir]).split('\n').filter(Boolean);
      const sparse = !layer.sparse
        ? layer.format
          ? [`--format=${layer.format}`]
          : []
        : layer.sparse === 'gnu'
          ? ['--sparse', '--format=gnu']
          : ['--sparse', '--format=pax', `--sparse-version=${layer.sparse.slice(4)}`];
      run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', ...sparse, '-C', layer.dir, '-cf', tar, ...entries]);
      diffIds.push(`sha256:${await sha256File(tar)}`);
      const compression = layer.compression ?? 'none';
      let blob = tar;
      if (compression === 'gzip') run('gzip', ['-n', '-k', tar]), (blob = `${tar}.gz`);
      if (compression === 'zstd') run('zstd', ['-q', '-k', tar]), (blob = `${tar}.zst`);
      layerDescriptors.push(await blobFromFile(blob, LAYER_TYPES[compression]));
    }
    const architecture = image.architecture ?? 'amd64';
    const config = await blobFromJson(
      { architecture, os: 'linux', config: { Env: image.env ?? [] }, rootfs: { type: 'layers', diff_ids: diffIds } },
      'application/vnd.oci.image.config.v1+json',
    );
    const manifest = await blobFromJson(
      { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: layerDescriptors },
      'application/vnd.oci.image.manifest.v1+json',
    );
    manifests.push(image.platformInIndex === false ? manifest : { ...manifest, platform: { architecture, os: 'linux' } });
  }
  const top =
    manifests.length === 1
      ? { mediaType: manifests[0]!.mediaType, digest: manifests[0]!.digest, size: manifests[0]!.size }
      : await blobFromJson({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }, 'application/vnd.oci.image.index.v1+json');
  writeFileSync(path.join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    path.join(layoutDir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
  return top.digest;
}

/** The manifest the registry serves for `repoAndTag` (curl, so the test does not trust our client). */
export function registryManifest(
  registry: TestRegistry,
  repoAndTag: string,
  accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
): { mediaType: string; layers: { digest: string; mediaType: string }[] } {
  const [repo, tag] = repoAndTag.split(':');
  return JSON.parse(run('curl', ['-sf', '-H', `Accept: ${accept}`, `http://${registry.host}/v2/${repo}/manifests/${tag}`])) as {
    mediaType: string;
    layers: { digest: string; mediaType: string }[];
  };
}

export interface PushOptions {
  /** Manifest format in the registry: skopeo converts to Docker v2 schema 2 (it gzips plain layers then). */
  format?: 'oci' | 'v2s2';
}

/** `skopeo copy` of the layout's `tag` to `repo:tag` in the registry; returns the pushed manifest's digest. */
export function pushImage(registry: TestRegistry, layoutDir: string, tag: string, repoAndTag: string, options: PushOptions = {}): string {
  const digestFile = `${layoutDir}-${tag}-${options.format ?? 'oci'}.digest`;
  run('skopeo', [
    'copy',
    '--quiet',
    '--all',
    '--digestfile',
    digestFile,
    ...(options.format ? ['--format', options.format] : []),
    ...registry.skopeoDestFlags,
    `oci:${layoutDir}:${tag}`,
    `docker://${registry.host}/${repoAndTag}`,
  ]);
  return readFileSync(digestFile, 'utf8').trim();
}

/**
 * Pushes a single-image layout blob by blob with curl (monolithic uploads), byte for byte: skopeo
 * always gzips plain tar layers on the way to a registry, and some tests need them plain.
 */
export function pushVerbatim(registry: TestRegistry, layoutDir: string, repoAndTag: string): string {
  const [repo, tag] = repoAndTag.split(':');
  const base = `http://${registry.host}/v2/${repo}`;
  const blob = (digest: string) => path.join(layoutDir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
  const index = JSON.parse(readFileSync(path.join(layoutDir, 'index.json'), 'utf8')) as { manifests: { digest: string; mediaType: string }[] };
  const top = index.manifests[0]!;
  const manifest = JSON.parse(readFileSync(blob(top.digest), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
  for (const { digest } of [manifest.config, ...manifest.layers]) {
    const headers = run('curl', ['-sf', '-D', '-', '-o', '/dev/null', '-X', 'POST', `${base}/blobs/uploads/`]);
    const location = /^location:\s*(\S+)/im.exec(headers)?.[1];
    if (!location) throw new Error(`no upload location from the registry: ${headers}`);
    const url = new URL(location, base);
    url.searchParams.set('digest', digest);
    run('curl', ['-sf', '-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '--data-binary', `@${blob(digest)}`, url.href]);
  }
  run('curl', ['-sf', '-X', 'PUT', '-H', `Content-Type: ${top.mediaType}`, '--data-binary', `@${blob(top.digest)}`, `${base}/manifests/${tag}`]);
  return top.digest;
}
