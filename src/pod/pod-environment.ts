/**
 * Pod mode's front door: CDI's importer environment (SPEC §4.1) and volume paths (§4.2) to one
 * ImportRequest. Parsing only; nothing is written here.
 */
import { existsSync } from 'node:fs';
import { ImportError, usageError } from '../errors.js';
import type { ContentType, ImportRequest, SourceSpec, TargetSpec, TransportOptions } from '../request.js';
import { parseChecksumEnv, parseFilesystemOverheadEnv, parseGoBool, parsePreallocationEnv, parseQuantityEnv } from '../util/cdi-environment.js';
import { pathKind } from '../util/path-kind.js';
import { filesIn, podExtraHeaders } from './extra-headers.js';
import type { PodPaths } from './paths.js';

/** Sources CDI knows but we do not implement: they fail the CDI way, "Unknown data source". */
export type PodSourceKind = 'http' | 'registry' | 'none';

export interface PodConfig {
  sourceKind: PodSourceKind;
  request: ImportRequest;
  blockMode: boolean;
  ownerUid: string;
  /** Node pull (IMPORTER_PULL_METHOD=node): wait for this file before importing. */
  readyFile?: string;
  /** Node pull: create this file once the import succeeded. */
  doneFile?: string;
  /** Extra-header variables and secret files left out for not being `Name: value` (named, never shown). */
  ignoredHeaders: string[];
}

function parseSource(env: NodeJS.ProcessEnv): PodSourceKind {
  const source = env.IMPORTER_SOURCE ?? '';
  if (source === 'http' || source === 'registry' || source === 'none') return source;
  // CDI's own words, which its controller and users grep for.
  throw new ImportError('usage', `Unknown data source: ${source}`);
}

function parseContentType(env: NodeJS.ProcessEnv): ContentType {
  const value = env.IMPORTER_CONTENTTYPE || 'kubevirt';
  if (value === 'kubevirt' || value === 'archive') return value;
  throw usageError(`Unsupported content type ${value}: IMPORTER_CONTENTTYPE must be kubevirt or archive`);
}

function transportOptions(env: NodeJS.ProcessEnv, paths: PodPaths, headers: string[]): TransportOptions {
  // A registry image pulled by the node is served to the importer on localhost (CDI's node pull):
  // never through the cluster's import proxy, as CDI's Go client has it.
  const transport: TransportOptions = { loopbackBypassesProxy: true };
  const user = env.IMPORTER_ACCESS_KEY_ID ?? '';
  const password = env.IMPORTER_SECRET_KEY ?? '';
  if (user && password) transport.auth = { username: user, password };
  if (env.IMPORTER_CERT_DIR) transport.caPaths = [env.IMPORTER_CERT_DIR];
  if (filesIn(paths.proxyCertsDir).length > 0) transport.proxyCaPaths = [paths.proxyCertsDir];
  if (parseGoBool(env.INSECURE_TLS ?? '') === true) transport.insecure = true;
  if (headers.length > 0) transport.headers = headers;
  if (env.IMPORTER_REGISTRY_IMAGE_ARCHITECTURE) transport.architecture = env.IMPORTER_REGISTRY_IMAGE_ARCHITECTURE;
  return transport;
}

function sourceSpec(kind: PodSourceKind, env: NodeJS.ProcessEnv, paths: PodPaths, headers: string[]): SourceSpec {
  if (kind === 'none') return { kind: 'blank' };
  const url = (env.IMPORTER_ENDPOINT ?? '').trim();
  if (!url) throw usageError(`IMPORTER_ENDPOINT is empty: the ${kind} source needs a URL`);
  return { kind, url, transport: transportOptions(env, paths, headers) };
}

function targetSpec(contentType: ContentType, blockMode: boolean, paths: PodPaths): TargetSpec {
  // Block wins over archive here, so the pipeline reports "ContentType Archive cannot have block volumeMode".
  if (blockMode) return { kind: 'block', path: paths.blockDevice };
  if (contentType === 'archive') return { kind: 'directory', path: paths.dataDir };
  // CDI writes the volume's disk.img in place: the pod's volume has no room for a second copy.
  return { kind: 'file', path: paths.diskImage, atomic: false };
}

export function parsePodEnvironment(env: NodeJS.ProcessEnv, paths: PodPaths): PodConfig {
  const sourceKind = parseSource(env);
  const contentType = parseContentType(env);
  const preallocation = parsePreallocationEnv(env.PREALLOCATION);
  if (sourceKind === 'registry' && contentType !== 'kubevirt') {
    throw usageError(`Unsupported content type ${contentType} when importing from registry`);
  }
  const blockMode = existsSync(paths.blockDevice);
  const extraHeaders = sourceKind === 'none' ? { headers: [], ignored: [] } : podExtraHeaders(env, paths.extraHeadersDir);
  const request: ImportRequest = {
    source: sourceSpec(sourceKind, env, paths, extraHeaders.headers),
    contentType,
    target: targetSpec(contentType, blockMode, paths),
    filesystemOverhead: parseFilesystemOverheadEnv(env.FILESYSTEM_OVERHEAD, blockMode),
    preallocation,
  };
  const requestedSize = parseQuantityEnv('IMPORTER_IMAGE_SIZE', env.IMPORTER_IMAGE_SIZE);
  if (requestedSize !== undefined) request.requestedSize = requestedSize;
  if (env.IMPORTER_CHECKSUM) request.checksum = parseChecksumEnv(env.IMPORTER_CHECKSUM);
  if (pathKind(paths.scratchDir) === 'directory') request.scratchDir = paths.scratchDir;
  const config: PodConfig = { sourceKind, request, blockMode, ownerUid: env.OWNER_UID ?? '', ignoredHeaders: extraHeaders.ignored };
  if (env.IMPORTER_READY_FILE) config.readyFile = env.IMPORTER_READY_FILE;
  if (env.IMPORTER_DONE_FILE) config.doneFile = env.IMPORTER_DONE_FILE;
  return config;
}
