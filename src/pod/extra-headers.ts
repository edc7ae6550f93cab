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

const EXTRA_HEADER_ENV_PREFIX = 'IMPORTER_EXTRA_HEADER_';

export function extraHeadersFromEnv(env: NodeJS.ProcessEnv): string[] {
  return Object.keys(env)
    .filter((name) => name.startsWith(EXTRA_HEADER_ENV_PREFIX) && env[name])
    .sort()
    .map((name) => env[name]!.trim());
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

export function extraHeadersFromDirectory(dir: string): string[] {
  const headers: string[] = [];
  for (const secret of listVisible(dir)) {
    const secretDir = path.join(dir, secret);
    if (pathKind(secretDir) !== 'directory') continue;
    for (const key of listVisible(secretDir)) {
      const file = path.join(secretDir, key);
      if (pathKind(file) !== 'file') continue;
      const header = readFileSync(file, 'utf8').trim();
      if (header) headers.push(header);
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
