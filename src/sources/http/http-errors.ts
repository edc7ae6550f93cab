/** Turns HTTP statuses and undici / TLS / socket failures into one-line ImportErrors. */
import { sslCertFileProblem } from './tls-options.js';
import { createRequire } from 'node:module';
import { cannotConnect, ImportError, oneLine } from '../../errors.js';
import { RedirectTargetError, receivesCredentials } from './http-request.js';
import { redactedUrl } from './request-headers.js';
import { quoteText } from '../../util/quote-text.js';

export function statusText(statusCode: number): string {
  // node:http loaded only here, for its table: an import by Range never needs the rest of it.
  const { STATUS_CODES } = createRequire(import.meta.url)('node:http') as typeof import('node:http');
  return `${statusCode} ${STATUS_CODES[statusCode] ?? 'Unknown'}`;
}

/** A non-2xx answer to the first request; `requested` is the URL asked for when redirects led to `url`. */
export function statusError(
  statusCode: number,
  url: URL,
  username: string | undefined,
  requested: URL = url,
  serverSays?: string,
  /** An Authorization header went with --header (the user's own credentials, not --user). */
  headerCredentials = false,
): ImportError {
  const where = redactedUrl(url);
  const tail = serverSays ? `: ${serverSays}` : '';
  if ((statusCode === 401 || statusCode === 403) && !receivesCredentials(url, requested)) {
    return cannotConnect(
      `access denied (${statusText(statusCode)}) to ${where}, where ${redactedUrl(requested)} redirected; credentials and extra headers are sent only to the scheme, host and port named in the URL (as curl does; or to the same host's https on port 443): import from ${where} directly${tail}`,
    );
  }
  if (statusCode === 401 || statusCode === 403) {
    // Quoted with escapes: a newline from `echo user | base64` in a Secret shows as \n, not as a space (found by a QA pass).
    const stray = username && /^\s|\s$/.test(username) ? ' (it has white space at an end: was the Secret made with `echo` instead of `echo -n`?)' : '';
    const who = username
      ? `as user ${quoteText(username)}${stray}; check the user name and password (--user/--password or --secret; the secretRef in a DataVolume)`
      : headerCredentials
        ? 'with the Authorization header given with --header; check its value'
        : 'without credentials; pass --user and --password or --secret (a secretRef in a DataVolume) if the server needs them';
    return cannotConnect(`access denied (${statusText(statusCode)}) to ${where} ${who}${tail}`);
  }
  return cannotConnect(`expected status code 200, got ${statusCode}. Status: ${statusText(statusCode)} (${where})${tail}${statusAdvice(statusCode, url, username)}`);
}

/** What to do about a status, after CDI's words for it (kept as they are: scripts match them). */
function statusAdvice(statusCode: number, url: URL, username: string | undefined): string {
  switch (statusCode) {
    case 404:
    case 410:
      return '; check the URL: the server has no file at that path';
    case 400:
      // nginx and others answer a plain request on their TLS port with 400 ("The plain HTTP request was sent to HTTPS port").
      return url.protocol === 'http:' ? '; if that port serves HTTPS, use an https:// URL' : '';
    case 429:
      // Said only once the retries (which honour Retry-After) have run out.
      return `; the server is limiting requests: try again later${username ? '' : ', or with credentials (anonymous pulls from Docker Hub are rate-limited)'}`;
    default:
      return '';
  }
}

/**
 * A failure worth another try that is not a socket error: a busy server's status, a body cut
 * short of its Content-Length. Carries the server's Retry-After, when it gave one.
 */
export class RetryableFailure extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** Statuses worth another try: the server is busy or briefly broken, not refusing us. */
export function isRetryableStatus(statusCode: number): boolean {
  return statusCode === 408 || statusCode === 429 || statusCode === 500 || statusCode === 502 || statusCode === 503 || statusCode === 504;
}

/** Codes along an error's cause chain (undici wraps socket and TLS errors). */
export function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    if (e instanceof AggregateError) for (const inner of e.errors) codes.push(...errorCodes(inner));
  }
  return codes;
}

/** The stall watchdog's error: no byte for the configured time. */
export class StallError extends Error {
  readonly code = 'CDI_STALLED';
  /** `bytes`: what did arrive in those seconds (a trickle), 0 for silence. */
  constructor(
    readonly seconds: number,
    readonly bytes = 0,
  ) {
    super(bytes === 0 ? `no data received for ${seconds} s` : `only ${bytes} bytes received in ${seconds} s`);
  }
}

/**
 * Whether `err` is the server staying silent for the whole of a wait of `waitMs`: undici's
 * headers timeout, or a StallError that long.
 */
export function isSilentFor(err: unknown, waitMs: number): boolean {
  return errorCodes(err).includes('UND_ERR_HEADERS_TIMEOUT') || (err instanceof StallError && err.bytes === 0 && err.seconds * 1000 >= waitMs);
}

const bodyBytes = new WeakMap<object, number>();

/**
 * Records on a failed Range read how many body bytes had already landed in the caller's buffer,
 * so the retry asks only for the rest. Returns `err`.
 */
export function noteBodyBytes(err: unknown, bytes: number): unknown {
  if (bytes > 0 && typeof err === 'object' && err !== null) bodyBytes.set(err, bytes);
  return err;
}

/** The body bytes `noteBodyBytes` recorded for this failure (0 when none). */
export function bodyBytesBefore(err: unknown): number {
  return typeof err === 'object' && err !== null ? (bodyBytes.get(err) ?? 0) : 0;
}

/** Failures that a new connection may cure: resets, drops, timeouts, stalls. */
export function isRetryableTransportError(err: unknown): boolean {
  const retryable = new Set([
    'CDI_STALLED',
    'ECONNRESET',
    'EPIPE',
    'ETIMEDOUT',
    'ECONNABORTED',
    'UND_ERR_SOCKET',
    'UND_ERR_CLOSED',
    'UND_ERR_CONNECT_TIMEOUT',
    'UND_ERR_HEADERS_TIMEOUT',
    'UND_ERR_BODY_TIMEOUT',
    'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  ]);
  return errorCodes(err).some((code) => retryable.has(code));
}

/**
 * Retryable once the server has answered for this file (a resume, a Range read): a refused
 * connection too, since a server restarting (a rollout, `nginx -s quit`) refuses connections for a
 * moment, and every 1 MiB Range read opens one. On the first request it means a wrong URL or a
 * server that is down, and fails at once.
 */
export function isRetryableOnceAnswered(err: unknown): boolean {
  return isRetryableTransportError(err) || errorCodes(err).includes('ECONNREFUSED');
}

const UNKNOWN_CA = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
]);

/** One clear line for a failure to talk to `url` (through `proxy` when set). */
export function transportError(err: unknown, url: URL, proxy?: string): ImportError {
  if (err instanceof ImportError) return err;
  if (err instanceof RedirectTargetError) url = err.url;
  const where = redactedUrl(url);
  const host = url.host;
  const codes = errorCodes(err);
  const has = (...wanted: string[]) => codes.some((c) => wanted.includes(c));
  const detail = oneLine(err);
  let proxyHost: string | undefined;
  try {
    proxyHost = proxy ? new URL(proxy).host : undefined;
  } catch {
    proxyHost = proxy;
  }
  let message: string;
  if (codes.some((c) => UNKNOWN_CA.has(c))) {
    const bundle = sslCertFileProblem();
    message = `cannot verify the TLS certificate of ${host}: it is signed by an unknown certificate authority; trust its CA with --ca-cert FILE|DIR (a certConfigMap in a DataVolume), or --insecure${bundle ? ` (and ${bundle}: the system's CAs are read from it)` : ''}`;
  } else if (has('ERR_TLS_CERT_ALTNAME_INVALID')) {
    message = `the TLS certificate of ${host} does not match the host name ${url.hostname}; use the name the certificate was issued for`;
  } else if (has('CERT_HAS_EXPIRED')) {
    message = `the TLS certificate of ${host} has expired; renew it on the server, or use --insecure`;
  } else if (has('CERT_NOT_YET_VALID')) {
    message = `the TLS certificate of ${host} is not valid yet; check the clocks, or use --insecure`;
  } else if (proxyHost && /\b407\b|Proxy Authentication Required/i.test(detail)) {
    // Said for the plain-http path too, where undici's words named neither the proxy nor the variable (found by a QA pass).
    const variable = url.protocol === 'https:' ? 'https_proxy' : 'http_proxy';
    message = `the proxy ${proxyHost} asks for credentials (407 Proxy Authentication Required) for ${host}: put them in ${variable} (http://user:password@${proxyHost}), or check no_proxy`;
  } else if (proxyHost && /Proxy response \((\d+)\)/.test(detail)) {
    message = `the proxy ${proxyHost} refused to connect to ${host}: ${statusText(Number(/Proxy response \((\d+)\)/.exec(detail)![1]))}; check https_proxy and no_proxy`;
  } else if (has('ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL')) {
    message = `cannot resolve host name ${proxyHost ? `of the proxy ${proxyHost}` : url.hostname} (DNS lookup failed)`;
  } else if (has('ECONNREFUSED')) {
    message = proxyHost
      ? `connection refused by the proxy ${proxyHost} (for ${host}); check http_proxy/https_proxy`
      : `connection refused by ${host}; check the URL and that the server is running`;
  } else if (has('EHOSTUNREACH', 'ENETUNREACH')) {
    message = `cannot reach ${proxyHost ? `the proxy ${proxyHost}` : host}: no route to host`;
  } else if (has('UND_ERR_CONNECT_TIMEOUT')) {
    message = `timed out connecting to ${proxyHost ? `the proxy ${proxyHost}` : host}`;
  } else if (has('UND_ERR_HEADERS_OVERFLOW')) {
    message = `${host} sent an answer head (status line and headers) larger than the 1 MiB cdi-importer reads; check the server's configuration`;
  } else if (err instanceof StallError && err.bytes > 0) {
    message = `${host} sent too slowly (${detail}); check the network or the server`;
  } else if (has('UND_ERR_HEADERS_TIMEOUT', 'CDI_STALLED')) {
    message = `${host} did not answer in time (${detail})`;
  } else if (has('ERR_SSL_WRONG_VERSION_NUMBER') || /wrong version number/i.test(detail)) {
    // What OpenSSL says when the other end answers a TLS hello in plain HTTP.
    message = `TLS handshake with ${host} failed: the server does not speak TLS on this port; if it serves plain HTTP, use an http:// URL`;
  } else if (/alert protocol version|unsupported protocol|no protocols available/i.test(detail)) {
    message = `TLS handshake with ${host} failed: the server offers only TLS versions older than 1.2, which are refused; the server needs TLS 1.2 or later`;
  } else if (has('EPROTO', 'ERR_SSL_WRONG_VERSION_NUMBER') || /SSL|TLS/i.test(detail)) {
    message = `TLS handshake with ${host} failed: ${openSslReason(detail)}`;
  } else {
    message = `request to ${host} failed: ${detail}`;
  }
  // Through a TLS proxy, a certificate error may be the proxy's own: TLS errors do not say whose.
  const certificateError = codes.some((c) => UNKNOWN_CA.has(c) || c.startsWith('CERT_') || c === 'ERR_TLS_CERT_ALTNAME_INVALID');
  if (certificateError && proxy?.startsWith('https:')) {
    message += `; or the certificate is the TLS proxy ${proxyHost}'s: trust its CA as a proxy CA (/proxycerts/)`;
  }
  return cannotConnect(`${message} (${where})`, err);
}

/**
 * OpenSSL's reason from a message such as `write EPROTO 80FC…:error:0A00042E:SSL
 * routines:ssl3_read_bytes:tlsv1 alert decode error:../deps/openssl/…`; the message itself otherwise.
 */
function openSslReason(detail: string): string {
  return /error:[0-9A-F]+:SSL routines:[^:]*:([^:]+)/i.exec(detail)?.[1]?.trim() ?? detail;
}
