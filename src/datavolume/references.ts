/**
 * What a DataVolume's `secretRef` and `certConfigMap` name, resolved from files given on the
 * command line: Secrets (`--secret FILE`, repeatable) and ConfigMaps (`--config-map FILE|DIR`; a
 * directory is a mounted ConfigMap, one PEM file per key, as CDI mounts it at /certs).
 *
 * A reference by name must be found. An empty reference (the seed's `secretRef: ""`) takes the
 * one object given, if exactly one was: that is what a user who passes --secret means.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { fileProblem, usageError } from '../errors.js';
import type { HttpAuth } from '../request.js';
import { parseSecretCredentials } from '../sources/k8s-secret.js';
import { isObject, parseYamlDocuments, type YamlObject } from './manifest.js';

interface NamedObject {
  name: string;
  file: string;
  object: YamlObject;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read ${what} ${file}: ${fileProblem(err)}`);
  }
}

function objectsOfKind(files: string[], kind: string): NamedObject[] {
  const found: NamedObject[] = [];
  const read = new Set<string>();
  for (const file of files) {
    // The same file given twice holds the same objects: once is enough (an empty reference takes "the one").
    if (read.has(path.resolve(file))) continue;
    read.add(path.resolve(file));
    for (const doc of parseYamlDocuments(readText(file, kind), file)) {
      if (!isObject(doc) || doc.kind !== kind) continue;
      const name = isObject(doc.metadata) && typeof doc.metadata.name === 'string' ? doc.metadata.name : '';
      found.push({ name, file, object: doc });
    }
    if (!found.some((o) => o.file === file)) throw usageError(`${file} holds no ${kind}`);
  }
  return found;
}

function pick(objects: NamedObject[], reference: string, kind: string, field: string, flag: string, owner: string): NamedObject | undefined {
  if (reference === '') return objects.length === 1 ? objects[0] : undefined;
  const match = objects.find((o) => o.name === reference);
  if (match) return match;
  const known = objects.map((o) => `"${o.name}"`).join(', ');
  throw usageError(
    objects.length === 0
      ? `${owner}: ${field} "${reference}" needs the ${kind}: give it with ${flag} FILE`
      : `${owner}: ${field} "${reference}" is not among the ${kind}s given with ${flag} (${known})`,
  );
}

export class SecretResolver {
  private readonly secrets: NamedObject[];

  constructor(files: string[]) {
    this.secrets = objectsOfKind(files, 'Secret');
  }

  /** How many Secrets were given. */
  get count(): number {
    return this.secrets.length;
  }

  /** Basic-auth credentials for a source's secretRef; undefined when there are none to use. */
  credentials(reference: string, owner: string): HttpAuth | undefined {
    const secret = pick(this.secrets, reference, 'Secret', 'secretRef', '--secret', owner);
    if (!secret) return undefined;
    return parseSecretCredentials(stringify(secret.object), `${secret.file} (Secret "${secret.name}")`);
  }
}

export class ConfigMapResolver {
  private readonly configMaps: NamedObject[] = [];
  private readonly directories: string[] = [];
  private readonly written = new Map<string, string>();
  private tempRoot?: string;

  constructor(paths: string[]) {
    const files: string[] = [];
    for (const p of paths) {
      let isDir: boolean;
      try {
        isDir = statSync(p).isDirectory();
      } catch (err) {
        throw usageError(`cannot read ConfigMap ${p}: ${fileProblem(err)}`);
      }
      if (isDir) this.directories.push(p);
      else files.push(p);
    }
    this.configMaps = objectsOfKind(files, 'ConfigMap');
  }

  /** CA paths for a source's certConfigMap; undefined when there is none to use. */
  caPaths(reference: string, owner: string): string[] | undefined {
    // A directory is already what CDI mounts: the certificates of the ConfigMap named in the DataVolume.
    if (this.directories.length > 0 && this.configMaps.length === 0) return [...this.directories];
    const configMap = pick(this.configMaps, reference, 'ConfigMap', 'certConfigMap', '--config-map', owner);
    if (!configMap) return this.directories.length > 0 ? [...this.directories] : undefined;
    return [this.materialize(configMap, owner)];
  }

  /** Writes the ConfigMap's PEM entries to a private directory the TLS options can read. */
  private materialize(configMap: NamedObject, owner: string): string {
    const key = `${configMap.file}\0${configMap.name}`;
    const existing = this.written.get(key);
    if (existing) return existing;
    const data = isObject(configMap.object.data) ? configMap.object.data : {};
    const entries = Object.entries(data).filter((e): e is [string, string] => typeof e[1] === 'string' && e[1].includes('-----BEGIN'));
    if (entries.length === 0) {
      throw usageError(`${owner}: ConfigMap "${configMap.name}" in ${configMap.file} has no PEM certificate in its data`);
    }
    this.tempRoot ??= mkdtempSync(path.join(tmpdir(), 'cdi-importer-certs-'));
    const dir = path.join(this.tempRoot, String(this.written.size));
    mkdirSync(dir);
    for (const [name, pem] of entries) {
      // Keys are file names in a mounted ConfigMap; keep them, minus anything path-like.
      writeFileSync(path.join(dir, name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\./, '_')), pem, { mode: 0o600 });
    }
    this.written.set(key, dir);
    return dir;
  }

  /** Removes the certificates written for this run. */
  cleanup(): void {
    if (this.tempRoot) rmSync(this.tempRoot, { recursive: true, force: true });
  }
}
