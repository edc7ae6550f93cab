/**
 * One GET with redirects followed by hand (undici 7 has no `maxRedirections` on request):
 * credentials and the user's extra headers go only to the origin the user named, as curl
 * does without --location-trusted (and to its https, see receivesCredentials).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { undici } from './undici-core.js';
import { cannotConnect } from '../../errors.js';
import type { HttpAuth } from '../../request.js';
import type { SourceDispatchers } from './dispatcher.js';
import { basicAuthorization, redactedUrl } from './request-headers.js';

const MAX_REDIRECTS = 10;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface HttpEndpoint {
  /** The URL the user gave (credentials stripped). */
  url: URL;
  auth?: HttpAuth;
  /** Extra headers, lower-case names. */
  headers: Record<string, string>;
  dispatchers: SourceDispatchers;
}

export interface HttpResponse {
  /** Where the answer finally came from, after redirects. */
  url: URL;
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: NodeJS.ReadableStream & { dump(opts?: { limit: number }): Promise<void>; destroy(err?: Error): unknown };
}

/**
 * Drops the body of an answer that will not be read. undici reports the destruction as an
 * 'error' event ("Request aborted"), which with nobody listening would crash the process.
 */
export function discardBody(response: HttpResponse): void {
  response.body.on('error', () => {});
  response.body.destroy();
}

/** A transport failure at a redirect's target; `cause` is the original error. */
export class RedirectTargetError extends Error {
  constructor(
    readonly url: URL,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Whether a redirect's target gets the credentials and extra headers given for `named`: the same
 * origin (scheme, host and port, as curl), or the same host's https on its default port when the
 * user named plain http on its default port: a server's "use HTTPS" redirect, which sends them to
 * the same host, now encrypted (curl drops them there too; CDI sends them to any host).
 */
export function receivesCredentials(url: URL, named: URL): boolean {
  if (url.origin === named.origin) return true;
  return named.protocol === 'http:' && named.port === '' && url.protocol === 'https:' && url.port === '' && url.hostname === named.hostname;
}

/** The headers sent to `url`: credentials and extra headers only where receivesCredentials says. */
export function headersFor(endpoint: HttpEndpoint, url: URL, extra: Record<string, string>): Record<string, string> {
  // The user's own User-Agent wins over ours (CDI sends it). identity: the bytes as stored, which the
  // checksum is of (a server that gzips on the fly would change them). `extra` (Range) wins over all.
  const ours = { 'accept-encoding': 'identity', ...extra };
  if (!receivesCredentials(url, endpoint.url)) return { 'user-agent': 'cdi-importer', ...ours };
  const authorization = basicAuthorization(endpoint.auth);
  return { 'user-agent': 'cdi-importer', ...endpoint.headers, ...(authorization ? { authorization } : {}), ...ours };
}

/**
 * GETs `start` (default: the endpoint's URL), following redirects. Returns the first
 * non-redirect answer whatever its status; transport failures throw (untranslated, so the
 * caller can decide to retry; use `transportError` to report them).
 */
export async function getFollowingRedirects(
  endpoint: HttpEndpoint,
  extra: Record<string, string>,
  signal: AbortSignal,
  start: URL = endpoint.url,
  /** How long to wait for each answer's headers (default: the dispatcher's, the stall timeout). */
  headersTimeoutMs?: number,
): Promise<HttpResponse> {
  let url = start;
  for (let hop = 0; ; hop++) {
    let response: Awaited<ReturnType<ReturnType<typeof undici>['request']>>;
    try {
      response = await undici().request(url, {
        method: 'GET',
        headers: headersFor(endpoint, url, extra),
        dispatcher: endpoint.dispatchers.for(url),
        signal,
        ...(headersTimeoutMs !== undefined ? { headersTimeout: headersTimeoutMs } : {}),
      });
    } catch (err) {
      // After a redirect the failing host is not the one the user named: say which it was.
      throw url === start ? err : new RedirectTargetError(url, err);
    }
    const location = headerValue(response.headers, 'location');
    if (!REDIRECT_STATUSES.has(response.statusCode) || !location) {
      return { url, statusCode: response.statusCode, headers: response.headers, body: response.body as HttpResponse['body'] };
    }
    await response.body.dump({ limit: 64 << 10 }).catch(() => {});
    if (hop >= MAX_REDIRECTS) throw cannotConnect(`too many redirects (more than ${MAX_REDIRECTS}) from ${redactedUrl(endpoint.url)}`);
    let next: URL;
    try {
      next = new URL(locationText(location), url);
    } catch {
      throw cannotConnect(`invalid redirect location ${JSON.stringify(location)} from ${redactedUrl(url)}`);
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw cannotConnect(`redirect to unsupported scheme ${next.protocol} from ${redactedUrl(url)}`);
    }
    url = next;
  }
}

/**
 * A Location header as the server meant it. Header values arrive one character per byte; a server
 * that puts a path's UTF-8 bytes there unencoded (nginx's `return 301 /$1` with a decoded capture)
 * means those characters, as curl and Go (CDI) read them: read as Latin-1, `é` would become
 * `Ã©` and the redirect a 404.
 */
function locationText(raw: string): string {
  if (!/[\x80-\xff]/.test(raw)) return raw;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(raw, 'latin1'));
  } catch {
    return raw;
  }
}
