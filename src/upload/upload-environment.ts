/**
 * The upload server's front door: CDI's `cdi-uploadserver` environment (SPEC §5.3) to one
 * configuration. Parsing only; nothing is opened or written here.
 */
import path from 'node:path';
import { usageError } from '../errors.js';
import type { ChecksumSpec } from '../request.js';
import { parseChecksumEnv, parseFilesystemOverheadEnv, parsePreallocationEnv, parseQuantityEnv } from '../util/cdi-environment.js';
import { pathKind } from '../util/path-kind.js';
import type { PodPaths } from '../pod/paths.js';
import { volumesAreThePods } from '../pod/empty-volume.js';

const DEFAULT_LISTEN_ADDRESS = '0.0.0.0';
const DEFAULT_LISTEN_PORT = 8443;
/** CDI serves /healthz on a plain-HTTP port of its own, which the pod's readiness probe uses. */
const DEFAULT_HEALTHZ_PORT = 8080;

export interface UploadConfig {
  listenAddress: string;
  listenPort: number;
  /** Plain-HTTP /healthz port; undefined = do not serve it (HEALTHZ_PORT=none). */
  healthzPort?: number;
  tlsCertFile: string;
  tlsKeyFile: string;
  /** CA bundle that client certificates must chain to. */
  clientCaFile: string;
  /** The Common Name the client certificate must carry (CDI's upload proxy). */
  clientName: string;
  /** The disk image file or block device; archives extract into its directory. */
  destination: string;
  blockMode: boolean;
  imageSize?: number;
  filesystemOverhead: number;
  preallocation: boolean;
  /** After this instant the server stops and reports "Deadline Passed". */
  deadline?: Date;
  checksum?: ChecksumSpec;
  scratchDir?: string;
  terminationLog: string;
  /** Seconds to keep answering (409 to uploads) after completion before exiting; 0 by default. */
  lingerSeconds: number;
  /** An upload whose body stops arriving for this long ends (its slot freed for a retry); 0: never. */
  stallSeconds: number;
  /**
   * Directories to empty before each upload, as pod mode does before an import: what a killed
   * earlier attempt left (a partial disk, half an archive, a spill file). Only the pod's own
   * volumes (see volumesAreThePods), never a DESTINATION of someone's choosing.
   */
  volumesToEmpty: string[];
}

const UPLOAD_LINGER_ENV = 'CDI_IMPORTER_UPLOAD_LINGER_SECONDS';
const UPLOAD_STALL_ENV = 'CDI_IMPORTER_UPLOAD_STALL_SECONDS';
/** As the importer's --stall-timeout: a minute without a byte. */
const DEFAULT_STALL_SECONDS = 60;

function required(env: NodeJS.ProcessEnv, name: string, what: string): string {
  const value = env[name]?.trim();
  if (!value) throw usageError(`${name} is not set: the upload server needs ${what}`);
  return value;
}

function parsePort(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined || text.trim() === '') return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw usageError(`invalid ${name} "${text}": expected a port number from 0 to 65535`);
  return port;
}

function parseStallSeconds(text: string | undefined): number {
  if (text === undefined || text.trim() === '') return DEFAULT_STALL_SECONDS;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds < 0) throw usageError(`invalid ${UPLOAD_STALL_ENV} "${text}": expected a number of seconds (0: never)`);
  return seconds;
}

function parseDeadline(text: string | undefined): Date | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  // RFC 3339 as Go's time.RFC3339 reads it: a date, a time and a zone (Z or ±hh:mm).
  const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
  const date = new Date(text.trim());
  if (!rfc3339.test(text.trim()) || Number.isNaN(date.getTime())) {
    throw usageError(`invalid DEADLINE "${text}": expected an RFC 3339 time such as 2025-01-31T12:00:00Z`);
  }
  return date;
}

export function parseUploadEnvironment(env: NodeJS.ProcessEnv, paths: PodPaths): UploadConfig {
  // An empty LISTEN_ADDRESS is allowed (all interfaces), as in CDI.
  const listenAddress = env.LISTEN_ADDRESS !== undefined ? env.LISTEN_ADDRESS.trim() : DEFAULT_LISTEN_ADDRESS;
  const healthz = env.HEALTHZ_PORT?.trim();
  const destinationText = env.DESTINATION?.trim();
  const destination = destinationText
    ? path.resolve(destinationText)
    : pathKind(paths.blockDevice) === 'block-device'
      ? paths.blockDevice
      : paths.diskImage;
  const blockMode = pathKind(destination) === 'block-device';
  const preallocation = parsePreallocationEnv(env.PREALLOCATION);
  const config: UploadConfig = {
    listenAddress,
    listenPort: parsePort('LISTEN_PORT', env.LISTEN_PORT, DEFAULT_LISTEN_PORT),
    tlsCertFile: required(env, 'TLS_CERT_FILE', 'its TLS certificate (PEM file)'),
    tlsKeyFile: required(env, 'TLS_KEY_FILE', 'its TLS private key (PEM file)'),
    clientCaFile: required(env, 'CLIENT_CERT_FILE', 'the CA bundle that signs client certificates (PEM file)'),
    clientName: required(env, 'CLIENT_NAME', 'the Common Name of the client certificate it accepts'),
    destination,
    blockMode,
    filesystemOverhead: parseFilesystemOverheadEnv(env.FILESYSTEM_OVERHEAD, blockMode),
    preallocation,
    terminationLog: paths.terminationLog,
    lingerSeconds: Math.min(Math.max(Number(env[UPLOAD_LINGER_ENV] ?? 0) || 0, 0), 600),
    stallSeconds: parseStallSeconds(env[UPLOAD_STALL_ENV]),
    volumesToEmpty: [],
  };
  if (healthz !== 'none') config.healthzPort = parsePort('HEALTHZ_PORT', healthz, DEFAULT_HEALTHZ_PORT);
  const imageSize = parseQuantityEnv('UPLOAD_IMAGE_SIZE', env.UPLOAD_IMAGE_SIZE);
  if (imageSize !== undefined) config.imageSize = imageSize;
  const deadline = parseDeadline(env.DEADLINE);
  if (deadline) config.deadline = deadline;
  if (env.IMPORTER_CHECKSUM) config.checksum = parseChecksumEnv(env.IMPORTER_CHECKSUM);
  if (pathKind(paths.scratchDir) === 'directory') config.scratchDir = paths.scratchDir;
  if (volumesAreThePods(env)) {
    if (destination === paths.diskImage) config.volumesToEmpty.push(paths.dataDir);
    if (config.scratchDir) config.volumesToEmpty.push(config.scratchDir);
  }
  return config;
}
