/** The headers a source sends: Basic auth and the user's extra `Name: value` headers. */
import type { HttpAuth } from '../../request.js';
import { usageError } from '../../errors.js';

/** The header name of a `Name: value` line, or undefined when the line is not one. */
export function headerLineName(line: string): string | undefined {
  const colon = line.indexOf(':');
  const name = colon > 0 ? line.slice(0, colon).trim() : '';
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) ? name : undefined;
}

/** Parses `Name: value` lines (CDI's IMPORTER_EXTRA_HEADER_n / --header) into lower-case names. */
export function parseHeaderLines(lines: readonly string[] = []): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const name = headerLineName(line);
    if (name === undefined) {
      throw usageError(`invalid header ${JSON.stringify(line)}: expected "Name: value"`);
    }
    // The same name twice: both values go, as one comma-joined field (what two lines mean in HTTP;
    // CDI adds both).
    const key = name.toLowerCase();
    const value = line.slice(line.indexOf(':') + 1).trim();
    // A line break would split it into two headers on the wire (request smuggling): refused as a
    // usage error here rather than as a failed request (found by a QA pass).
    if (/[\r\n\0]/.test(value)) {
      throw usageError(`invalid header ${name}: its value holds a line break or NUL; give each header as its own "Name: value"`);
    }
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  return headers;
}

/** Basic auth only when both user and password are set (SPEC §5.1), as CDI does. */
export function basicAuthorization(auth: HttpAuth | undefined): string | undefined {
  if (!auth?.username || !auth.password) return undefined;
  return `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
}

/** The URL to request: credentials written into it go separately, as an Authorization header. */
export function withoutCredentials(url: URL): URL {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy;
}

/**
 * The URL as shown in messages: no user info, and query values hidden (presigned URLs carry
 * their signatures and tokens there); the parameter names stay, for telling URLs apart.
 */
export function redactedUrl(url: URL): string {
  const shown = withoutCredentials(url);
  // The fragment is never sent; it goes, with or without a query.
  shown.hash = '';
  if (!shown.search) return shown.href;
  const names = [...new URLSearchParams(shown.search).keys()];
  shown.search = '';
  return `${shown.href}?${names.map((name) => `${encodeURIComponent(name)}=***`).join('&')}`;
}

/**
 * redactedUrl for text that is not a URL we use (it does not parse, or its scheme is not ours):
 * what stands before the last `@` of the address (a password may hold an unencoded `/`) becomes
 * `***`, and so does the query; a registry digest's `@sha256:` is not user info.
 */
export function redactedUrlText(text: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/*/i.exec(text)?.[0] ?? '';
  const rest = text.slice(scheme.length);
  const address = rest.replace(/[?#].*$/s, '');
  const at = [...address.matchAll(/@(?!sha256:)/g)].pop()?.index;
  const shownAddress = at === undefined ? address : `***${address.slice(at)}`;
  return `${scheme}${shownAddress}${rest.length > address.length && rest[address.length] === '?' ? '?***' : ''}`;
}
