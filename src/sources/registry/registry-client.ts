/**
 * Talking to one registry's /v2/ API over the HTTP source's undici dispatchers (TLS, CAs, proxies):
 * scheme choice, and auth — anonymous, Basic, or the Bearer token flow announced by
 * `WWW-Authenticate: Bearer realm=…,service=…,scope=…`.
 */
import { badInput, cannotConnect } from '../../errors.js';
import type { HttpAuth, TransportOptions } from '../../request.js';
import { stallTimeoutMs, type SourceDispatchers } from '../http/dispatcher.js';
import { errorCodes, isRetryableStatus, isRetryableTransportError, statusError, statusText, transportError } from '../http/http-errors.js';
import { getFollowingRedirects, headerValue, type HttpEndpoint, type HttpResponse } from '../http/http-request.js';
import { basicAuthorization, parseHeaderLines, redactedUrl } from '../http/request-headers.js';
import { defaultRetryPolicy, waitAfterFailure, waitForBusyServer, type RetryNotice, type RetryPolicy } from '../http/retry-policy.js';
import { parseAuthChallenge, type AuthChallenge } from './auth-challenge.js';
import type { RegistryReference } from './reference.js';

/** Small JSON documents only: manifests, configs, token answers, error bodies. */
const JSON_LIMIT = 4 << 20;

export class RegistryClient {
  private authorization?: string;
  private challenge?: AuthChallenge;
  /** The ping's `/v2/` answered 404: maybe a proxy without that route, maybe no registry at all. */
  private noApiRoot = false;
  private readonly headers: Record<string, string>;
  /** No byte for this long while a body flows counts as a dropped connection. */
  readonly stallMs: number;
  /** How often a dropped layer download is resumed. */
  readonly retry: RetryPolicy;

  private constructor(
    private readonly base: URL,
    readonly ref: RegistryReference,
    private readonly auth: HttpAuth | undefined,
    private readonly dispatchers: SourceDispatchers,
    transport: TransportOptions,
    retry: RetryPolicy,
    /** Hears of every retry (requests and layer downloads), which are otherwise silent. */
    readonly onRetry?: RetryNotice,
  ) {
    this.headers = parseHeaderLines(transport.headers);
    this.stallMs = stallTimeoutMs(transport);
    this.retry = retry;
  }

  /**
   * Pings `/v2/` to learn the scheme and the auth the registry wants. https always; with
   * `insecure`, a registry that does not speak TLS is tried again over plain http (as
   * containers/image does for insecure registries).
   */
  static async connect(
    ref: RegistryReference,
    transport: TransportOptions,
    dispatchers: SourceDispatchers,
    signal: AbortSignal,
    retry: RetryPolicy = defaultRetryPolicy,
    onRetry?: RetryNotice,
  ): Promise<RegistryClient> {
    const schemes = transport.insecure ? ['https:', 'http:'] : ['https:'];
    let lastError: unknown;
    let lastUrl = new URL(`https://${ref.host}/v2/`);
    // A dropped, reset or silent connection may be cured by another try, as for every other
    // request: the schemes are tried again after the backoff, within the retry budget.
    for (let attempt = 0; ; attempt++) {
      let transient: { err: unknown; url: URL } | undefined;
      for (const scheme of schemes) {
        lastUrl = new URL(`${scheme}//${ref.host}/v2/`);
        const client = new RegistryClient(lastUrl, ref, transport.auth, dispatchers, transport, retry, onRetry);
        try {
          await client.ping(signal);
          return client;
        } catch (err) {
          if (signal.aborted) throw signal.reason ?? err;
          lastError = err;
          // A host that never completes the connection (10 s each) is not asked again: six more
          // tries would take minutes to say the same.
          if (!transient && isRetryableTransportError(err) && !errorCodes(err).includes('UND_ERR_CONNECT_TIMEOUT')) transient = { err, url: lastUrl };
        }
      }
      if (!transient) break;
      // The transient failure is the story (a plain-http try of a TLS port only says "400").
      lastError = transient.err;
      lastUrl = transient.url;
      if (attempt >= retry.retries) break;
      await waitAfterFailure(attempt, retry, transient.err, 0, signal, onRetry);
    }
    const error = transportError(lastError, lastUrl, dispatchers.proxyFor(lastUrl));
    // The usual cause: a registry that serves plain http, which only --insecure allows.
    if (!transport.insecure && error.message.startsWith('TLS handshake')) {
      // A docker:// reference has no http:// form: the HTTP source's hint does not apply here.
      const message = error.message.replace('; if it serves plain HTTP, use an http:// URL', '');
      throw cannotConnect(`${message}; if the registry serves plain http, allow it with --insecure (INSECURE_TLS=true in a pod)`, lastError);
    }
    throw error;
  }

  private async ping(signal: AbortSignal): Promise<void> {
    const response = await getFollowingRedirects(this.endpoint(this.base), {}, signal);
    await discard(response);
    if (response.statusCode === 400 && this.base.protocol === 'http:') {
      // What a TLS port answers plain http with ("Client sent an HTTP request to an HTTPS server"):
      // this is not the registry's scheme, and taking it would fail every later request.
      throw cannotConnect(`${this.base.host} answered plain http with 400 Bad Request: it serves https`);
    }
    // Only the challenge matters here. Other statuses (404 from proxies without a /v2/ route,
    // a busy 503) are left to the real requests, which retry and explain.
    if (response.statusCode === 401) this.challenge = parseAuthChallenge(headerValue(response.headers, 'www-authenticate'));
    this.noApiRoot = response.statusCode === 404;
  }

  /** A URL under this registry's repository, e.g. `manifests/latest`, `blobs/sha256:…`. */
  repositoryUrl(suffix: string): URL {
    return new URL(`${this.ref.repository}/${suffix}`, this.base);
  }

  /**
   * GET with auth. Returns a 2xx answer; other statuses become errors: 401/403 say which user
   * (never the password), 404 is `notFound`'s bad-input message (an unknown tag is the user's input).
   */
  async get(url: URL, accept: string | undefined, signal: AbortSignal, notFound: () => Error, headers: Record<string, string> = {}): Promise<HttpResponse> {
    let reauthorized = false;
    for (let failures = 0; ; ) {
      if (!this.authorization && this.challenge) this.authorization = await this.authorize(this.challenge, signal);
      let response: HttpResponse;
      try {
        response = await getFollowingRedirects(this.endpoint(url), accept ? { accept, ...headers } : headers, signal);
      } catch (err) {
        if (signal.aborted) throw signal.reason ?? err;
        // A dropped connection or a timeout may be cured by another try; a refusal is final.
        if (isRetryableTransportError(err) && failures < this.retry.retries) {
          await waitAfterFailure(failures++, this.retry, err, 0, signal, this.onRetry);
          continue;
        }
        throw transportError(err, url, this.dispatchers.proxyFor(url));
      }
      if (response.statusCode >= 200 && response.statusCode < 300) return response;
      const body = await readText(response, 64 << 10).catch(() => '');
      if (isRetryableStatus(response.statusCode) && failures < this.retry.retries) {
        // Busy (429, 503) or briefly broken (500, 502, 504): registries say so under load.
        await waitForBusyServer(failures++, this.retry, response, signal, this.onRetry);
        continue;
      }
      if (response.statusCode === 401 && !reauthorized) {
        reauthorized = true;
        // A token for another scope, or the first hint that this repository needs auth.
        const challenge = parseAuthChallenge(headerValue(response.headers, 'www-authenticate'));
        if (challenge) {
          this.challenge = challenge;
          this.authorization = undefined;
          continue;
        }
      }
      if (response.statusCode === 404) {
        // A registry's 404 carries its error document (MANIFEST_UNKNOWN, BLOB_UNKNOWN...). Without one,
        // after a 404 for /v2/ as well, the host is something else (a web server, the wrong port).
        if (this.noApiRoot && !registryErrorCode(body)) {
          throw badInput(
            `${this.base.host} does not look like a container registry: ${this.base.href} and ${redactedUrl(url)} both answered 404 Not Found, with no registry error (a registry answers /v2/ with 200 or 401); check the host and port of the docker:// reference`,
          );
        }
        throw notFound();
      }
      const code = registryErrorCode(body);
      throw statusError(response.statusCode, url, this.auth?.username, url, code && `registry says ${code}`);
    }
  }

  /** GET of a small JSON document (manifest, config): the body as bytes, bounded. */
  async getBytes(url: URL, accept: string | undefined, signal: AbortSignal, notFound: () => Error): Promise<{ bytes: Buffer; contentType?: string }> {
    for (let failures = 0; ; failures++) {
      const response = await this.get(url, accept, signal, notFound);
      try {
        const bytes = await readBody(response, JSON_LIMIT);
        return { bytes, contentType: headerValue(response.headers, 'content-type')?.split(';')[0]?.trim() };
      } catch (err) {
        if (signal.aborted) throw signal.reason ?? err;
        if (err instanceof Error && err.message.startsWith('larger than')) throw badInput(`${url.href} is ${err.message}: not a manifest or image config`);
        // A manifest or config cut off on its way (a dropped or stalled connection): ask again.
        if (!isRetryableTransportError(err) || failures >= this.retry.retries) throw transportError(err, url);
        await waitAfterFailure(failures, this.retry, err, 0, signal, this.onRetry);
      }
    }
  }

  /** The request settings for `url` on this registry, with the current credentials. */
  endpointFor(url: URL): HttpEndpoint {
    return this.endpoint(url);
  }

  private endpoint(url: URL): HttpEndpoint {
    const headers = { ...this.headers, ...(this.authorization ? { authorization: this.authorization } : {}) };
    // Credentials only ever go to the registry's own origin (headers, not `extra`): blob
    // redirects to object storage must not carry them.
    return { url, auth: undefined, headers, dispatchers: this.dispatchers };
  }

  private async authorize(challenge: AuthChallenge, signal: AbortSignal): Promise<string | undefined> {
    const basic = basicAuthorization(this.auth);
    if (challenge.scheme === 'basic') {
      if (!basic) throw statusError(401, this.base, undefined);
      return basic;
    }
    if (challenge.scheme !== 'bearer') {
      throw cannotConnect(`the registry ${this.ref.host} asks for ${challenge.scheme} authentication, which is not supported (Basic and Bearer are)`);
    }
    const realm = challenge.params.realm;
    if (!realm) throw cannotConnect(`the registry ${this.ref.host} asks for a Bearer token but names no realm to get it from`);
    let tokenUrl: URL;
    try {
      tokenUrl = new URL(realm, this.base);
    } catch {
      throw cannotConnect(`the registry ${this.ref.host} names an invalid token realm ${JSON.stringify(realm)}`);
    }
    if (challenge.params.service) tokenUrl.searchParams.set('service', challenge.params.service);
    tokenUrl.searchParams.set('scope', challenge.params.scope ?? `repository:${this.ref.repository}:pull`);
    const endpoint: HttpEndpoint = { url: tokenUrl, auth: undefined, headers: basic ? { authorization: basic } : {}, dispatchers: this.dispatchers };
    let response: HttpResponse;
    try {
      response = await getFollowingRedirects(endpoint, { accept: 'application/json' }, signal);
    } catch (err) {
      if (signal.aborted) throw signal.reason ?? err;
      throw transportError(err, tokenUrl, this.dispatchers.proxyFor(tokenUrl));
    }
    if (response.statusCode < 200 || response.statusCode >= 300) {
      await discard(response);
      throw statusError(response.statusCode, tokenUrl, this.auth?.username);
    }
    const text = await readText(response, JSON_LIMIT).catch((err: unknown) => {
      throw transportError(err, tokenUrl);
    });
    let token: unknown;
    try {
      const json = JSON.parse(text) as { token?: unknown; access_token?: unknown };
      token = json.token ?? json.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || token === '') {
      throw cannotConnect(`the token service ${tokenUrl.origin}${tokenUrl.pathname} gave no token (${statusText(response.statusCode)})`);
    }
    return `Bearer ${token}`;
  }
}

function registryErrorCode(body: string): string | undefined {
  try {
    const json = JSON.parse(body) as { errors?: { code?: unknown; message?: unknown }[] };
    const first = json.errors?.[0];
    if (first && typeof first.code === 'string') return typeof first.message === 'string' ? `${first.code} (${first.message})` : first.code;
  } catch {
    // not a registry error document
  }
  return undefined;
}

async function discard(response: HttpResponse): Promise<void> {
  await response.body.dump({ limit: 64 << 10 }).catch(() => {});
}

async function readBody(response: HttpResponse, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      response.body.destroy();
      throw new Error(`larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function readText(response: HttpResponse, limit: number): Promise<string> {
  return (await readBody(response, limit)).toString('utf8');
}
