/** Parsing `docker://host[:port]/repo[:tag|@sha256:hex]` (SPEC §4.1 IMPORTER_ENDPOINT, §5.2). */
import { usageError } from '../../errors.js';
import { redactedUrlText } from '../http/request-headers.js';

export interface RegistryReference {
  /** `host[:port]` as the user wrote it (Docker Hub names become registry-1.docker.io). */
  host: string;
  /** Repository path, e.g. `library/fedora` or `kubevirt/fedora-cloud-container-disk-demo`. */
  repository: string;
  /** A tag or a `sha256:` digest: what goes after `/manifests/`. */
  reference: string;
  /** Set when the reference is a digest, which the manifest bytes must then hash to. */
  digest?: string;
  /** For messages: `host/repo:tag` or `host/repo@sha256:…`. */
  display: string;
}

const DOCKER_HUB = 'registry-1.docker.io';
// Distribution's grammar: lower-case path components separated by `.`, `_`, `__` or dashes.
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export function parseRegistryReference(url: string): RegistryReference {
  const match = /^docker:\/\/(.+)$/i.exec(url.trim());
  // A password written into the reference is never shown.
  const shown = JSON.stringify(redactedUrlText(url));
  if (!match) throw usageError(`invalid registry reference ${shown}: expected docker://host/repository:tag`);
  let rest = match[1]!;
  const bad = (why: string) => usageError(`invalid registry reference ${shown}: ${why}`);
  if (rest.includes('@') && /^[^/]*@/.test(rest)) throw bad('credentials in the reference are not supported; use --user and --password (a secretRef in a DataVolume)');

  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`digest ${JSON.stringify(digest)} is not sha256: followed by 64 lower-case hex digits`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`tag ${JSON.stringify(tag)} is not a valid tag`);
  }

  const parts = rest.split('/');
  let host = DOCKER_HUB;
  // Docker's rule: the first component is a registry host when it looks like one.
  if (parts.length > 1 && (parts[0]!.includes('.') || parts[0]!.includes(':') || parts[0] === 'localhost')) {
    host = parts.shift()!;
  }
  if (host === 'docker.io' || host === 'index.docker.io') host = DOCKER_HUB;
  if (host === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) {
    throw bad('the repository must be lower-case path components (letters, digits, . _ -)');
  }
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host)) throw bad(`invalid registry host ${JSON.stringify(host)}`);
  const repository = parts.join('/');
  const reference = digest ?? tag ?? 'latest';
  const display = `${host}/${repository}${digest ? `@${digest}` : `:${reference}`}`;
  return { host, repository, reference, digest, display };
}
