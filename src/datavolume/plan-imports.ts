/**
 * DataVolume specs to ImportRequests, one per volume, written to `<out>/<name>.img` (or the
 * directory `<out>/<name>` for archive content) and sized by the claim's requested storage.
 * Everything is checked before anything is imported, so a manifest with one bad volume
 * imports none.
 */
import path from 'node:path';
import { usageError, ImportError } from '../errors.js';
import { VolumePlanError } from './volume-plan-error.js';
import type { ContentType, ImportRequest, SourceSpec, TransportOptions } from '../request.js';
import { parseQuantity } from '../util/quantity.js';
import { usableSpace } from '../targets/usable-space.js';
import { isObject, type DataVolumeEntry, type YamlObject } from './manifest.js';
import type { ConfigMapResolver, SecretResolver } from './references.js';

export interface PlannedImport {
  name: string;
  origin: string;
  request: ImportRequest;
  /** What the user may not expect, said before the import (an empty secretRef left without credentials). */
  warnings: string[];
}

export interface PlanOptions {
  outDir: string;
  secrets: SecretResolver;
  configMaps: ConfigMapResolver;
  /** Fraction reserved as on a filesystem PVC; 0 makes each image the requested size. */
  filesystemOverhead: number;
  preallocation: boolean;
  /** Where a one-pass qcow2 import sets aside clusters that arrive before their mapping (CDI gives such a volume a scratch PVC). */
  scratchDir: string;
  /** TLS unverified and registries over plain http, for every source (CDI's insecureRegistries is cluster-wide too). */
  insecure?: boolean;
}

const MiB = 1 << 20;

/** Sources CDI has that this command cannot import yet, with what they are. */
const NOT_YET: Record<string, string> = {
  s3: 'S3 buckets',
  gcs: 'Google Cloud Storage',
  imageio: 'oVirt ImageIO',
  vddk: 'VMware VDDK',
  pvc: 'cloning a PVC',
  snapshot: 'restoring a VolumeSnapshot',
  upload: 'uploads (use cdi-importer upload-server)',
};

/** Kubernetes object names are DNS-1123 subdomains; checking keeps `<out>/<name>.img` inside `<out>`. */
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** The claim (spec.pvc or spec.storage) and the name of its field. */
function claimOf(entry: DataVolumeEntry): { claim: YamlObject | undefined; field: string } {
  if (isObject(entry.spec.pvc)) return { claim: entry.spec.pvc, field: 'spec.pvc' };
  return { claim: isObject(entry.spec.storage) ? entry.spec.storage : undefined, field: 'spec.storage' };
}

function requestedStorage(entry: DataVolumeEntry, { claim, field }: ReturnType<typeof claimOf>): number {
  if (!claim) throw usageError(`${entry.origin}: needs spec.pvc or spec.storage with resources.requests.storage`);
  const resources = isObject(claim.resources) ? claim.resources : {};
  const requests = isObject(resources.requests) ? resources.requests : {};
  const storage = requests.storage;
  if (storage === undefined || storage === null || storage === '') throw usageError(`${entry.origin}: ${field}.resources.requests.storage is missing`);
  // A quantity is a string (or a plain number in YAML); a list or a map is a mistake, not "1Gi" stringified.
  if (typeof storage !== 'string' && typeof storage !== 'number') {
    throw usageError(`${entry.origin}: ${field}.resources.requests.storage must be a quantity such as 10Gi, not ${Array.isArray(storage) ? 'a list' : 'a map'}`);
  }
  let bytes: number;
  try {
    bytes = parseQuantity(String(storage));
  } catch (err) {
    throw usageError(`${entry.origin}: ${field}.resources.requests.storage: ${(err as Error).message}`);
  }
  if (bytes === 0) throw usageError(`${entry.origin}: ${field}.resources.requests.storage is 0: no image fits in an empty volume`);
  if (bytes < MiB) {
    // SPEC §7: the usable space is rounded down to whole MiB, as CDI does, which leaves nothing of this.
    throw usageError(`${entry.origin}: ${field}.resources.requests.storage ${String(storage)} is less than 1 MiB, and the usable space is rounded down to whole MiB (as CDI does): request 1Mi or more`);
  }
  return bytes;
}

function contentTypeOf(entry: DataVolumeEntry): ContentType {
  const value = entry.spec.contentType ?? 'kubevirt';
  if (value === 'kubevirt' || value === 'archive') return value;
  throw usageError(`${entry.origin}: spec.contentType "${String(value)}" is not kubevirt or archive`);
}

function transportFor(source: YamlObject, kind: string, entry: DataVolumeEntry, options: PlanOptions, warnings: string[]): TransportOptions {
  const transport: TransportOptions = {};
  const reference = str(source.secretRef);
  // A lone --secret stands in for an empty secretRef (the seed's examples leave it ""), but not for
  // credentials the URL carries itself: those are the ones meant for that server.
  // (Read as the HTTP source reads them: the parsed URL's user name.)
  const url = str(source.url);
  const urlHasCredentials = reference === '' && URL.canParse(url) && new URL(url).username !== '';
  const auth = urlHasCredentials ? undefined : options.secrets.credentials(reference, entry.origin);
  if (auth) transport.auth = auth;
  // Several Secrets: which one an empty secretRef means is not ours to guess (another volume's may
  // be among them), and a public source needs none; but a 401 later should not come as a surprise.
  const secretCount = options.secrets.count;
  if (!auth && !urlHasCredentials && reference === '' && secretCount > 1) {
    warnings.push(`${entry.origin}: its secretRef is empty and ${secretCount} Secrets were given with --secret: importing without credentials (name one in source.${kind}.secretRef to use it)`);
  }
  const caPaths = options.configMaps.caPaths(str(source.certConfigMap), entry.origin);
  if (caPaths) transport.caPaths = caPaths;
  if (Array.isArray(source.extraHeaders)) transport.headers = source.extraHeaders.map(String);
  if (options.insecure) transport.insecure = true;
  if (Array.isArray(source.secretExtraHeaders) && source.secretExtraHeaders.length > 0) {
    throw usageError(`${entry.origin}: source.${kind}.secretExtraHeaders is not supported here; give the headers in extraHeaders`);
  }
  return transport;
}

function sourceOf(entry: DataVolumeEntry, options: PlanOptions, warnings: string[]): SourceSpec {
  if (entry.spec.sourceRef !== undefined) {
    throw new ImportError('bad-input', `${entry.origin}: spec.sourceRef (a DataSource) is not supported yet; use spec.source.http or spec.source.registry`);
  }
  const source = entry.spec.source;
  if (!isObject(source)) throw usageError(`${entry.origin}: spec.source is missing`);
  const kinds = Object.keys(source);
  if (kinds.length !== 1) {
    throw usageError(`${entry.origin}: spec.source must name exactly one source, found ${kinds.length ? kinds.join(', ') : 'none'}`);
  }
  const kind = kinds[0]!;
  const settings = isObject(source[kind]) ? (source[kind] as YamlObject) : {};
  switch (kind) {
    case 'http': {
      const url = str(settings.url).trim();
      if (url === '') throw usageError(`${entry.origin}: source.http.url is empty: set it to the image's http:// or https:// URL`);
      if (!/^https?:\/\//i.test(url)) throw usageError(`${entry.origin}: source.http.url "${url}" is not an http:// or https:// URL`);
      return { kind: 'http', url, transport: transportFor(settings, kind, entry, options, warnings) };
    }
    case 'registry': {
      const url = str(settings.url).trim();
      if (url === '') throw usageError(`${entry.origin}: source.registry.url is empty: set it to the image's docker:// reference`);
      if (!/^(docker|oci-archive):\/\//i.test(url)) {
        throw usageError(`${entry.origin}: source.registry.url "${url}" is not a docker:// reference`);
      }
      if (/^oci-archive:/i.test(url)) throw new ImportError('bad-input', `${entry.origin}: oci-archive registry URLs are not supported yet`);
      const transport = transportFor(settings, kind, entry, options, warnings);
      // CDI's DataVolume field for picking one platform out of a manifest list.
      const platform = isObject(settings.platform) ? (settings.platform as YamlObject) : {};
      const architecture = str(platform.architecture).trim();
      return { kind: 'registry', url, transport: architecture ? { ...transport, architecture } : transport };
    }
    case 'blank':
      return { kind: 'blank' };
    default: {
      const what = NOT_YET[kind];
      // A source CDI has is a limit of ours (exit 1, as other unsupported input); any other name is a mistake in the manifest.
      if (!what) throw usageError(`${entry.origin}: unknown source "${kind}"; supported sources are http, registry and blank`);
      throw new ImportError('bad-input', `${entry.origin}: source.${kind} (${what}) is not supported by cdi-importer yet; supported sources are http, registry and blank`);
    }
  }
}

export function planImports(entries: DataVolumeEntry[], options: PlanOptions): PlannedImport[] {
  const plans = entries.map((entry) => {
    try {
      return planOne(entry, options);
    } catch (err) {
      throw err instanceof ImportError ? new VolumePlanError(entry.name, err) : err;
    }
  });
  refuseSharedPaths(plans);
  return plans;
}

/**
 * An archive volume named `x.img` extracts into `<out>/x.img`, where a volume named `x` writes its
 * image: found before anything is imported, not when the second one fails.
 */
function refuseSharedPaths(plans: PlannedImport[]): void {
  const byPath = new Map<string, PlannedImport>();
  for (const plan of plans) {
    const earlier = byPath.get(plan.request.target.path);
    if (earlier) {
      throw new VolumePlanError(
        plan.name,
        usageError(`${plan.origin} and ${earlier.origin} would both be written to ${plan.request.target.path}: rename one of them`),
      );
    }
    byPath.set(plan.request.target.path, plan);
  }
}

function planOne(entry: DataVolumeEntry, options: PlanOptions): PlannedImport {
  if (!OBJECT_NAME.test(entry.name) || entry.name.length > 253) {
    throw usageError(`${entry.origin}: "${entry.name}" is not a valid Kubernetes object name (lower-case letters, digits, '-' and '.')`);
  }
  const contentType = contentTypeOf(entry);
  const warnings: string[] = [];
  const source = sourceOf(entry, options, warnings);
  if (source.kind === 'blank' && contentType === 'archive') {
    throw usageError(`${entry.origin}: Cannot create empty disk with content type archive`);
  }
  const claimed = claimOf(entry);
  const { claim, field } = claimed;
  if (contentType === 'archive' && claim?.volumeMode === 'Block') {
    // CDI's webhook refuses it: an archive's files need a file system.
    throw usageError(`${entry.origin}: ContentType Archive cannot have block volumeMode (${field}.volumeMode: Block)`);
  }
  const requestedSize = requestedStorage(entry, claimed);
  // A Block volume has no file system to keep space free on (SPEC §4.1: 0 for block), so its image is the whole request.
  const filesystemOverhead = claim?.volumeMode === 'Block' ? 0 : options.filesystemOverhead;
  if (usableSpace(requestedSize, filesystemOverhead) === 0) {
    throw usageError(
      `${entry.origin}: ${field}.resources.requests.storage leaves no whole MiB once --filesystem-overhead ${filesystemOverhead} is kept free: request more, or lower the overhead`,
    );
  }
  const target =
    contentType === 'archive'
      ? ({ kind: 'directory', path: path.join(options.outDir, entry.name) } as const)
      : ({ kind: 'file', path: path.join(options.outDir, `${entry.name}.img`), atomic: true, localMode: true } as const);
  return {
    name: entry.name,
    origin: entry.origin,
    request: {
      source,
      contentType,
      target,
      requestedSize,
      filesystemOverhead,
      preallocation: options.preallocation,
      scratchDir: options.scratchDir,
    },
    warnings,
  };
}
