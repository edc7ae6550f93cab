/**
 * Extra HTTP headers for the importer pod, CDI style: `IMPORTER_EXTRA_HEADER_<n>` environment
 * variables (plain `Name: value`), plus secret headers mounted as files under
 * `/extraheaders/<secret>/<key>` (one header per file). Kubernetes secret volumes keep their
 * real files in dot-directories (`..data`) behind symlinks, so dotfiles are skipped and links
 * are followed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { pathKind } from '../util/path-kind.js';
import path from 'node:path';
import { headerLineName } from '../sources/http/request-headers.js';

const EXTRA_HEADER_ENV_PREFIX = 'IMPORTER_EXTRA_HEADER_';

/**
 * The pod's extra headers, with where each came from. Lines that are not `Name: value` are left
 * out, as CDI leaves them out, and named by origin only in `ignored`: a secret header's value must
 * not reach the logs or the termination message (DataVolume events).
 */
export function podExtraHeaders(env: NodeJS.ProcessEnv, secretHeadersDir: string): { headers: string[]; ignored: string[] } {
  const headers: string[] = [];
  const ignored: string[] = [];
  for (const { origin, line } of [...extraHeadersFromEnv(env), ...extraHeadersFromDirectory(secretHeadersDir)]) {
    if (headerLineName(line) === undefined) ignored.push(origin);
    else headers.push(line);
  }
  return { headers, ignored };
}

interface HeaderLine {
  /** The variable or file it came from. */
  origin: string;
  line: string;
}

function extraHeadersFromEnv(env: NodeJS.ProcessEnv): HeaderLine[] {
  return Object.keys(env)
    .filter((name) => name.startsWith(EXTRA_HEADER_ENV_PREFIX) && env[name])
    .sort()
    .map((name) => ({ origin: name, line: env[name]!.trim() }));
}

function listVisible(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((name) => !name.startsWith('.'))
      .sort();
  } catch {
    return [];
  }
}

function extraHeadersFromDirectory(dir: string): HeaderLine[] {
  const headers: HeaderLine[] = [];
  for (const secret of listVisible(dir)) {
    const secretDir = path.join(dir, secret);
    if (pathKind(secretDir) !== 'directory') continue;
    for (const key of listVisible(secretDir)) {
      const file = path.join(secretDir, key);
      if (pathKind(file) !== 'file') continue;
      const header = readFileSync(file, 'utf8').trim();
      if (header) headers.push({ origin: file, line: header });
    }
  }
  return headers;
}

/** Files in a directory of CA certificates, dotfiles skipped; empty when it does not exist. */
export function filesIn(dir: string): string[] {
  return listVisible(dir)
    .map((name) => path.join(dir, name))
    .filter((file) => pathKind(file) === 'file');
}
