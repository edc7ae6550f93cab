/** HTTP / HTTPS / Basic-auth source (SPEC §5.1): a resumable byte stream, and Range random access when the server allows it. */
import { usageError } from '../../errors.js';
import type { HttpAuth, TransportOptions } from '../../request.js';
import type { OpenedSource, Source } from '../source.js';
import { BlockCacheReader, defaultBlockCacheOptions, type BlockCacheOptions } from './block-cache-reader.js';
import { proxySettingsFromEnv, SourceDispatchers } from './dispatcher.js';
import { isRetryableStatus, isRetryableTransportError, statusError, transportError } from './http-errors.js';
import { getFollowingRedirects, type HttpEndpoint, type HttpResponse } from './http-request.js';
import { httpRangeFetcher } from './range-fetcher.js';
import { parseHeaderLines, redactedUrl } from './request-headers.js';
import { identityOf } from './resource-identity.js';
import { ResumableBody } from './resumable-body.js';
import { backoffDelay, defaultRetryPolicy, sleep, type RetryPolicy } from './retry-policy.js';

/** Knobs that tests and benchmarks turn; defaults suit real networks. */
export interface HttpTuning {
  retry: RetryPolicy;
  cache: BlockCacheOptions;
  /** Proxy variables come from here (default: process.env). */
  env: NodeJS.ProcessEnv;
  /** Offer random access when the server supports Range (default true). */
  randomAccess: boolean;
  /** Observes every Range request of the random-access reader. */
  onRangeRequest?: (start: number, length: number) => void;
  onRetry?: (reason: string, received: number) => void;
}

export class HttpSource implements Source {
  readonly description: string;
  private readonly url: URL;
  private readonly auth?: HttpAuth;
  private readonly headers: Record<string, string>;
  private readonly tuning: HttpTuning;

  constructor(url: string, private readonly transport: TransportOptions, tuning: Partial<HttpTuning> = {}) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw usageError(`invalid URL ${JSON.stringify(url)}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw usageError(`not an http(s) URL: ${url}`);
    // Credentials written into the URL work as curl's do, unless given separately.
    const urlAuth = parsed.username
      ? { username: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) }
      : undefined;
    this.auth = transport.auth ?? urlAuth;
    this.url = new URL(redactedUrl(parsed));
    this.description = this.url.href;
    this.headers = parseHeaderLines(transport.headers);
    this.tuning = {
      retry: defaultRetryPolicy,
      cache: defaultBlockCacheOptions,
      env: process.env,
      randomAccess: true,
      ...tuning,
    };
  }

  async open(signal: AbortSignal): Promise<OpenedSource> {
    const dispatchers = new SourceDispatchers(this.transport, proxySettingsFromEnv(this.tuning.env));
    const endpoint: HttpEndpoint = { url: this.url, auth: this.auth, headers: this.headers, dispatchers };
    const stallMs = (this.transport.stallTimeoutSeconds ?? 60) * 1000;
    let first: HttpResponse;
    try {
      first = await this.firstAnswer(endpoint, signal);
    } catch (err) {
      await dispatchers.close().catch(() => {});
      throw err;
    }
    const identity = identityOf(first.headers);
    // The dispatchers live until both the stream and the random-access reader are done with them.
    let users = 1;
    const release = async () => {
      if (--users === 0) await dispatchers.close().catch(() => {});
    };
    const stream = new ResumableBody(endpoint, first, identity, {
      stallMs,
      retry: this.tuning.retry,
      onRetry: this.tuning.onRetry,
    });
    stream.once('close', () => void release());
    const forwardAbort = () => stream.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', forwardAbort, { once: true });
    stream.once('close', () => signal.removeEventListener('abort', forwardAbort));

    let randomAccess: BlockCacheReader | undefined;
    if (this.tuning.randomAccess && identity.acceptsRanges && identity.size !== undefined && identity.size > 0) {
      users++;
      const fetcher = httpRangeFetcher(endpoint, first.url, identity, {
        stallMs,
        retry: this.tuning.retry,
        signal,
        onRequest: this.tuning.onRangeRequest,
      });
      randomAccess = new BlockCacheReader(identity.size, fetcher, this.tuning.cache, release);
    }
    return { stream, size: identity.size, randomAccess };
  }

  /** The first GET: busy servers (5xx, 429) and dropped connections get a few more tries; refusals do not. */
  private async firstAnswer(endpoint: HttpEndpoint, signal: AbortSignal): Promise<HttpResponse> {
    const proxy = endpoint.dispatchers.proxyFor(endpoint.url);
    for (let attempt = 0; ; attempt++) {
      let response: HttpResponse;
      try {
        response = await getFollowingRedirects(endpoint, {}, signal);
      } catch (err) {
        if (signal.aborted) throw signal.reason ?? err;
        if (!isRetryableTransportError(err) || attempt >= this.tuning.retry.retries) {
          throw transportError(err, endpoint.url, proxy);
        }
        this.tuning.onRetry?.(err instanceof Error ? err.message : String(err), 0);
        await sleep(backoffDelay(attempt, this.tuning.retry), signal);
        continue;
      }
      if (response.statusCode >= 200 && response.statusCode < 300) return response;
      await response.body.dump({ limit: 64 << 10 }).catch(() => {});
      if (!isRetryableStatus(response.statusCode) || attempt >= this.tuning.retry.retries) {
        throw statusError(response.statusCode, endpoint.url, endpoint.auth?.username);
      }
      this.tuning.onRetry?.(`status ${response.statusCode}`, 0);
      await sleep(backoffDelay(attempt, this.tuning.retry), signal);
    }
  }
}
