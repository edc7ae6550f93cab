/**
 * Credentials from a Kubernetes Secret manifest, the one a DataVolume's `secretRef` names:
 * `data.accessKeyId` / `data.secretKey` in base64 (or `stringData` in plain text).
 */
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { fileProblem, usageError } from '../errors.js';
import type { HttpAuth } from '../request.js';

function decodeBase64(value: unknown, key: string, file: string): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(value)) {
    throw usageError(`secret ${file}: data.${key} is not base64 text`);
  }
  return Buffer.from(value.replace(/\s+/g, ''), 'base64').toString('utf8');
}

/** Parses the Secret's YAML text; `file` is only used in messages. */
export function parseSecretCredentials(text: string, file: string): HttpAuth {
  let secret: Record<string, unknown> | undefined;
  try {
    // A file may hold several documents (e.g. a Secret next to its DataVolume): take the Secret.
    const documents = parseAllDocuments(text).map((doc) => {
      if (doc.errors.length > 0) throw doc.errors[0];
      return doc.toJS() as unknown;
    });
    secret = documents.find(
      (doc): doc is Record<string, unknown> =>
        typeof doc === 'object' && doc !== null && ((doc as { kind?: unknown }).kind === 'Secret' || documents.length === 1),
    );
  } catch (err) {
    throw usageError(`secret ${file} is not valid YAML: ${err instanceof Error ? err.message.split('\n')[0]!.replace(/:\s*$/, '') : String(err)}`);
  }
  if (!secret) throw usageError(`secret ${file} holds no Kubernetes Secret`);
  const data = (secret.data ?? {}) as Record<string, unknown>;
  const stringData = (secret.stringData ?? {}) as Record<string, unknown>;
  const read = (key: string): string | undefined => {
    if (typeof stringData[key] === 'string') return stringData[key] as string;
    if (data[key] !== undefined) return decodeBase64(data[key], key, file);
    return undefined;
  };
  const username = read('accessKeyId');
  const password = read('secretKey');
  if (username === undefined || password === undefined) {
    throw usageError(`secret ${file} must have data.accessKeyId and data.secretKey (base64)`);
  }
  return { username, password };
}

export function readSecretCredentials(file: string): HttpAuth {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read secret ${file}: ${fileProblem(err)}`);
  }
  return parseSecretCredentials(text, file);
}
