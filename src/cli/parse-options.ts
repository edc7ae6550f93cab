import { constants, existsSync } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type { SourceSpec, TransportOptions } from '../request.js';
import { parseQuantity } from '../util/quantity.js';
import { fileProblem, usageError } from '../errors.js';
import { redactedUrlText } from '../sources/http/request-headers.js';

export function parseSize(text: string): number {
  try {
    return parseQuantity(text);
  } catch (err) {
    throw usageError((err as Error).message);
  }
}

export function parseOverhead(text: string): number {
  const value = Number(text);
  // Number('') and Number(' ') are 0: an empty value is a mistake, not "keep nothing free".
  if (!/^\s*\+?\.?\d/.test(text) || !Number.isFinite(value) || value < 0 || value >= 1) {
    throw usageError(`invalid filesystem overhead "${text}": expected a fraction such as 0.06 (0 ≤ value < 1)`);
  }
  return value;
}

/** A duration flag in seconds: a positive number (fractions allowed). */
export function parseSeconds(text: string, flag: string): number {
  const value = Number(text);
  if (!/^\s*\d/.test(text) || !Number.isFinite(value) || value <= 0) {
    throw usageError(`invalid ${flag} "${text}": expected a number of seconds greater than 0`);
  }
  // Node's timers hold at most 2^31-1 ms and fire at once beyond it; a larger value means "no
  // limit", which 24.8 days is for an import.
  return Math.min(value, MAX_TIMER_SECONDS);
}

const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/**
 * Refuses an argument that is empty or only white space: an unset shell variable ("$IMAGE") arrives
 * as an empty one, and a name of spaces alone is a slip, not a file anyone means.
 */
export function refuseBlank(value: string, what: string, instead: string): void {
  if (value.trim() !== '') return;
  throw usageError(`${what} is ${value === '' ? 'an empty string' : `only white space (${JSON.stringify(value)})`}: ${instead}`);
}

/** A source argument: a URL, a docker:// reference, `-` for stdin, or a local path. */
export function parseSourceArgument(text: string, transport: TransportOptions): SourceSpec {
  refuseBlank(text, 'the source', 'give a URL, a docker:// reference, a path, or - for stdin');
  if (text === '-') {
    // Nothing would ever come: the user meant to pipe an image in.
    if (process.stdin.isTTY) throw usageError('standard input is a terminal: pipe the image in (e.g. curl -s URL | cdi-importer import - disk.img) or give its path');
    return { kind: 'stdin' };
  }
  if (/^https?:\/\/\//i.test(text)) throw usageError(`the URL "${text}" has no host name: write it as http(s)://HOST/PATH`);
  if (/^https?:\/\//i.test(text)) return { kind: 'http', url: text, transport };
  // One slash short of a URL is a typo, not a file in a directory named "http:".
  if (/^(https?|docker):\/[^/]/i.test(text) && !existsSync(text)) {
    throw usageError(`"${redactedUrlText(text)}" is not a URL (one slash after the scheme): did you mean ${redactedUrlText(text.replace(':/', '://'))}?`);
  }
  if (/^docker:\/\//i.test(text)) return { kind: 'registry', url: text, transport };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw usageError(`unsupported source "${redactedUrlText(text)}": use http://, https://, docker://, a local path or - for stdin`);
  }
  return { kind: 'file', path: text };
}

/** A scratch directory is needed only part way through an import: check it before the import starts. */
export async function checkedScratchDir(dir: string): Promise<string> {
  refuseBlank(dir, '--scratch', 'give a directory');
  const info = await stat(dir).catch((err: unknown) => {
    throw usageError(`cannot use scratch directory ${dir}: ${fileProblem(err)}`);
  });
  if (!info.isDirectory()) throw usageError(`scratch directory ${dir} is not a directory`);
  await access(dir, constants.W_OK).catch(() => {
    throw usageError(`scratch directory ${dir} is not writable`);
  });
  return dir;
}
