/**
 * From a reference to the image to read: the manifest (picking the platform from a manifest
 * list / OCI index), its layers base first, and its config. Every document fetched by digest
 * is checked against that digest.
 */
import { badInput } from '../../errors.js';
import { checkDigestSyntax, sha256Digest } from './digest.js';
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  isIndexType,
  MANIFEST_ACCEPT,
  OCI_INDEX,
  OCI_MANIFEST,
} from './media-types.js';
import type { RegistryClient } from './registry-client.js';

export interface Descriptor {
  mediaType?: string;
  digest: string;
  /** Bytes, checked with Number.isSafeInteger (it comes from the registry). */
  size: number;
}

export interface ResolvedImage {
  /** The image manifest's digest (after any platform pick). */
  manifestDigest: string;
  layers: Descriptor[];
  /** The parsed image config (`config.Env` carries the labels). */
  config: { config?: { Env?: unknown[] }; architecture?: string };
}

interface PlatformEntry extends Descriptor {
  platform?: { architecture?: string; os?: string; variant?: string };
}

/** An index nested in an index is legal; two levels is all any real image uses. */
const MAX_INDEX_DEPTH = 2;

export async function resolveImage(client: RegistryClient, architecture: string, signal: AbortSignal): Promise<ResolvedImage> {
  const ref = client.ref;
  let reference = ref.reference;
  let expectedDigest = ref.digest;
  for (let depth = 0; ; depth++) {
    const { json, mediaType, digest } = await fetchManifest(client, reference, expectedDigest, signal);
    if (isIndexType(mediaType)) {
      if (depth >= MAX_INDEX_DEPTH) throw badInput(`${ref.display}: manifest lists nested more than ${MAX_INDEX_DEPTH} deep`);
      const entry = pickPlatform(json, architecture, ref.display);
      reference = entry.digest;
      expectedDigest = entry.digest;
      continue;
    }
    if (mediaType !== DOCKER_MANIFEST && mediaType !== OCI_MANIFEST) {
      throw badInput(`${ref.display}: unsupported manifest type ${mediaType}`);
    }
    const layers = descriptors(json.layers, `${ref.display} manifest layers`);
    const [configDescriptor] = descriptors([json.config], `${ref.display} manifest config`);
    const config = await fetchConfig(client, configDescriptor!, signal);
    return { manifestDigest: digest, layers, config };
  }
}

async function fetchManifest(
  client: RegistryClient,
  reference: string,
  expectedDigest: string | undefined,
  signal: AbortSignal,
): Promise<{ json: Record<string, unknown>; mediaType: string; digest: string }> {
  const ref = client.ref;
  const notFound = () =>
    badInput(
      reference === ref.reference
        ? `image ${ref.display} not found (manifest unknown): check the repository name and the ${ref.digest ? 'digest' : 'tag'}`
        : `manifest ${reference} listed by ${ref.display} not found in the registry (manifest unknown)`,
    );
  const { bytes, contentType } = await client.getBytes(client.repositoryUrl(`manifests/${reference}`), MANIFEST_ACCEPT, signal, notFound);
  const digest = sha256Digest(bytes);
  if (expectedDigest && digest !== expectedDigest) {
    throw badInput(`digest mismatch for manifest ${expectedDigest} of ${ref.display}: the registry served content hashing to ${digest}`);
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('not an object');
  } catch {
    throw badInput(`${ref.display}: the manifest is not valid JSON`);
  }
  const declared = typeof json.mediaType === 'string' ? json.mediaType : undefined;
  let mediaType = declared ?? contentType ?? '';
  if (mediaType !== OCI_INDEX && mediaType !== DOCKER_MANIFEST_LIST && mediaType !== OCI_MANIFEST && mediaType !== DOCKER_MANIFEST) {
    // OCI documents may omit mediaType; the shape says which one it is.
    if (Array.isArray(json.manifests)) mediaType = OCI_INDEX;
    else if (Array.isArray(json.layers)) mediaType = OCI_MANIFEST;
  }
  if (mediaType === DOCKER_SCHEMA1 || mediaType === DOCKER_SCHEMA1_SIGNED || json.schemaVersion === 1) {
    throw badInput(`${ref.display} is a Docker schema 1 image, which is not supported: push it again with a current tool (schema 2 or OCI)`);
  }
  return { json, mediaType, digest };
}

function descriptors(list: unknown, what: string): Descriptor[] {
  if (!Array.isArray(list)) throw badInput(`${what}: missing or not a list`);
  return list.map((item: unknown, index) => {
    const d = (item ?? {}) as Record<string, unknown>;
    const digest = checkDigestSyntax(d.digest, `${what}[${index}]`);
    const size = d.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw badInput(`${what}[${index}] has an invalid size ${JSON.stringify(size)}`);
    }
    return { mediaType: typeof d.mediaType === 'string' ? d.mediaType : undefined, digest, size };
  });
}

function pickPlatform(index: Record<string, unknown>, architecture: string, display: string): Descriptor {
  if (!Array.isArray(index.manifests)) throw badInput(`${display}: the manifest list has no manifests`);
  const entries = index.manifests as PlatformEntry[];
  const forArch = entries.filter((e) => e?.platform?.architecture === architecture && (e.platform.os ?? 'linux') === 'linux');
  // Entries that name no platform (tools writing OCI layouts, `crane index append`) fit any:
  // the first of them is taken when none names this architecture, as containers/image (CDI's
  // and skopeo's) chooses.
  const chosen = forArch[0] ?? entries.find((e) => !e?.platform?.architecture);
  if (!chosen) {
    const available = [...new Set(entries.map((e) => e?.platform?.architecture).filter((a): a is string => !!a && a !== 'unknown'))];
    throw badInput(
      available.length > 0
        ? `${display} has no image for architecture ${architecture} (available: ${available.join(', ')}); pick one with --arch (IMPORTER_REGISTRY_IMAGE_ARCHITECTURE in a pod)`
        : `${display} has no image for architecture ${architecture}: its manifest list names no architecture that an image can run on`,
    );
  }
  return descriptors([chosen], `${display} manifest list entry for ${architecture}`)[0]!;
}

async function fetchConfig(client: RegistryClient, descriptor: Descriptor, signal: AbortSignal): Promise<ResolvedImage['config']> {
  const ref = client.ref;
  const { bytes } = await client.getBytes(client.repositoryUrl(`blobs/${descriptor.digest}`), undefined, signal, () =>
    badInput(`the image config ${descriptor.digest} of ${ref.display} is missing from the registry (blob unknown)`),
  );
  const digest = sha256Digest(bytes);
  if (digest !== descriptor.digest) {
    throw badInput(`digest mismatch for the image config of ${ref.display}: expected ${descriptor.digest}, calculated ${digest}`);
  }
  try {
    const json = JSON.parse(bytes.toString('utf8')) as ResolvedImage['config'];
    return typeof json === 'object' && json !== null ? json : {};
  } catch {
    throw badInput(`the image config of ${ref.display} is not valid JSON`);
  }
}
