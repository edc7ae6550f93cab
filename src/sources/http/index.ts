/** HTTP / HTTPS / Basic-auth source (SPEC §5.1): a resumable byte stream, and Range random access when the server allows it. */
import { setMaxListeners } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { cannotConnect, usageError } from '../../errors.js';
import type { HttpAuth, TransportOptions } from '../../request.js';
import type { OpenedSource, Source } from '../source.js';
import { BlockCacheReader, defaultBlockCacheOptions, type BlockCacheOptions } from './block-cache-reader.js';
import { DirectRangeClient, UseGeneralPath } from './direct-range-client.js';
import { firstAnswerWaitMs, SourceDispatchers, stallTimeoutMs } from './dispatcher.js';
import { isRetryableStatus, isRetryableTransportError, isSilentFor, statusError, transportError } from './http-errors.js';
import { discardBody, getFollowingRedirects, headersFor, headerValue, type HttpEndpoint, type HttpResponse } from './http-request.js';
import { checkedHeaders, httpRangeFetcher } from './range-fetcher.js';
import { parseHeaderLines, redactedUrl, redactedUrlText, withoutCredentials } from './request-headers.js';
import { identityOf, parseContentRange, type ResourceIdentity } from './resource-identity.js';
import { readBodyFully } from './stall-watch.js';
import { ResumableBody, type ResumableBodyOptions } from './resumable-body.js';
import { defaultRetryPolicy, waitAfterFailure, waitForBusyServer, type RetryNotice, type RetryPolicy } from './retry-policy.js';

/** Knobs that tests and benchmarks turn; defaults suit real networks. */
export interface HttpTuning {
  retry: RetryPolicy;
  cache: BlockCacheOptions;
  /** Proxy variables come from here (default: process.env). */
  env: NodeJS.ProcessEnv;
  /** Offer random access when the server supports Range (default true). */
  randomAccess: boolean;
  /** How long the first request waits for an answer (default: firstAnswerWaitMs). */
  firstAnswerMs?: number;
  /** A probe answered within this is from a server close by (default DIRECT_STREAM_MAX_ROUND_TRIP_MS). */
  nearServerMs?: number;
  onRetry?: RetryNotice;
}

/**
 * A whole-file download goes as 1 MiB Range requests on the direct client only from a server whose
 * probe was answered within this once connected (about one round trip; 0.8 ms on the loopback
 * here): each of those requests waits a round trip, and three in flight cannot fill a longer one.
 * A 237 MB raw.gz through a proxy adding 20 ms (50 ms) of round trip took 2.07 s (4.26 s) that way,
 * against 0.86 s (0.91 s) as one undici GET and 2.46 s (2.55 s) for curl | gzip -dc; on the
 * loopback 0.65 s against 0.77 s.
 */
const DIRECT_STREAM_MAX_ROUND_TRIP_MS = 5;

/** Listeners on a random-access reader's signal: its reads in flight (qcow2: 8, L2 tables ahead: 16, cache reads). */
const MAX_READ_LISTENERS = 100;

export class HttpSource implements Source {
  readonly description: string;
  private readonly url: URL;
  private readonly auth?: HttpAuth;
  private readonly headers: Record<string, string>;
  private readonly tuning: HttpTuning;

  constructor(url: string, private readonly transport: TransportOptions, tuning: Partial<HttpTuning> = {}) {
    // Messages about a URL that does not parse must not show a password written into it.
    const shown = redactedUrlText(url);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw usageError(`invalid URL ${JSON.stringify(shown)}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw usageError(`not an http(s) URL: ${shown}`);
    // Credentials written into the URL work as curl's do, unless given separately.
    const urlAuth = parsed.username
      ? { username: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) }
      : undefined;
    this.auth = transport.auth ?? urlAuth;
    this.url = withoutCredentials(parsed);
    this.description = redactedUrl(this.url);
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
    const answerMs = this.tuning.firstAnswerMs ?? firstAnswerWaitMs(this.transport);
    const dispatchers = new SourceDispatchers(this.transport, this.tuning.env);
    const endpoint: HttpEndpoint = { url: this.url, auth: this.auth, headers: this.headers, dispatchers };
    const stallMs = stallTimeoutMs(this.transport);
    // Range reads (the probe included) on sockets that read into their destination; undici for the rest.
    let direct = this.tuning.randomAccess ? new DirectRangeClient(() => dispatchers.tls) : undefined;
    let first: FirstAnswer;
    try {
      first = await this.firstAnswer(endpoint, signal, stallMs, answerMs, direct);
    } catch (err) {
      direct?.close();
      await dispatchers.close().catch(() => {});
      throw err;
    }
    const { identity } = first;
    // The dispatchers live until both the stream and the random-access reader are done with them.
    let users = 1;
    const release = async () => {
      if (--users === 0) await dispatchers.close().catch(() => {});
    };
    // After a Range probe the stream opens its own GET on first read, so a pipeline that reads
    // by Range never starts (and aborts) a whole-file download.
    const stream = new ResumableBody(endpoint, first.response, identity, {
      stallMs,
      retry: this.tuning.retry,
      onRetry: this.tuning.onRetry,
      direct: this.directStreamFor(endpoint, first, dispatchers),
    });
    stream.once('close', () => void release());
    const forwardAbort = () => stream.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', forwardAbort, { once: true });
    stream.once('close', () => signal.removeEventListener('abort', forwardAbort));

    let randomAccess: BlockCacheReader | undefined;
    if (this.tuning.randomAccess && identity.acceptsRanges && identity.size !== undefined && identity.size > 0) {
      users++;
      // Reads still in flight when the reader is closed (the import failed or ended) stop there,
      // without a retry or a "retrying" notice after the import's last word.
      const closed = new AbortController();
      const readSignal = AbortSignal.any([signal, closed.signal]);
      // Every read in flight may wait on it (a retry's backoff, an undici request): more than
      // Node's default of 10 listeners is expected, not a leak.
      setMaxListeners(MAX_READ_LISTENERS, readSignal);
      const fetcher = httpRangeFetcher(endpoint, first.url, identity, {
        stallMs,
        retry: this.tuning.retry,
        signal: readSignal,
        onRetry: this.tuning.onRetry,
        direct,
      });
      randomAccess = new BlockCacheReader(identity.size, fetcher, this.tuning.cache, async () => {
        closed.abort(new Error('the source was closed'));
        direct?.close();
        await release();
      });
      if (first.head) randomAccess.prime(0, first.head);
    } else {
      direct?.close();
      direct = undefined;
    }
    return { stream, size: identity.size, randomAccess };
  }

  /**
   * After a 206 probe with a size and no proxy, from a server close by, the stream reads by Range
   * on its own direct client (direct-range-body.ts) rather than through one undici GET.
   */
  private directStreamFor(endpoint: HttpEndpoint, first: FirstAnswer, dispatchers: SourceDispatchers): ResumableBodyOptions['direct'] {
    const { identity, url } = first;
    if (first.response || !identity.acceptsRanges || !identity.size) return undefined;
    if (first.probeWaitMs === undefined || first.probeWaitMs > (this.tuning.nearServerMs ?? DIRECT_STREAM_MAX_ROUND_TRIP_MS)) return undefined;
    const headers = checkedHeaders(endpoint, url, identity);
    if (!DirectRangeClient.suits(dispatchers, url, headers)) return undefined;
    return { client: new DirectRangeClient(() => dispatchers.tls), location: url, headers };
  }

  /**
   * The first GET. With random access wanted it asks for the first cache block only: a 206
   * proves Range works and gives the total size; a server that ignores Range sends the whole
   * file (200), which becomes the stream. Busy servers (5xx, 429) and dropped connections get
   * a few more tries; refusals do not.
   */
  private async firstAnswer(endpoint: HttpEndpoint, signal: AbortSignal, stallMs: number, answerMs: number, direct?: DirectRangeClient): Promise<FirstAnswer> {
    const proxy = endpoint.dispatchers.proxyFor(endpoint.url);
    let probe = this.tuning.randomAccess ? this.tuning.cache.blockSize : 0;
    // The probe goes out on a direct socket first: an import read by Range then never loads
    // undici (~40 ms of a run). Any answer but a clean 206 (a server that ignores Range, a
    // redirect, a refusal, a file smaller than the probe) is asked again through undici, which
    // handles them all: one more request in those cases.
    const probeHeaders = probe > 0 ? headersFor(endpoint, endpoint.url, { range: `bytes=0-${probe - 1}` }) : {};
    let directProbe = probe > 0 && direct && DirectRangeClient.suits(endpoint.dispatchers, endpoint.url, probeHeaders) ? direct : undefined;
    for (let attempt = 0; ; attempt++) {
      let response: HttpResponse;
      try {
        if (directProbe) {
          const answer = await directProbe.read(endpoint.url, probeHeaders, 0, probe, undefined, stallMs, signal, answerMs).catch((err: unknown) => {
            if (err instanceof UseGeneralPath) return undefined;
            throw err;
          });
          const identity = answer?.data && probedIdentity(answer.headers, probe);
          if (identity) return { url: endpoint.url, identity, head: answer.data!, probeWaitMs: answer!.headWaitMs };
          directProbe = undefined;
          if (answer && isRetryableStatus(answer.statusCode) && attempt < this.tuning.retry.retries) {
            // Busy: the general path asks again, after the wait the server asked for.
            await waitForBusyServer(attempt, this.tuning.retry, answer, signal, this.tuning.onRetry);
          } else attempt--;
          continue;
        }
        response = await getFollowingRedirects(endpoint, probe ? { range: `bytes=0-${probe - 1}` } : {}, signal, endpoint.url, answerMs);
        if (response.statusCode === 206 && probe) {
          const identity = probedIdentity(response.headers, probe);
          if (identity) return { url: response.url, identity, head: await readBodyFully(response.body as never, stallMs, probe) };
          discardBody(response);
          probe = 0; // a 206 we cannot trust: fall back to a plain GET
          continue;
        }
      } catch (err) {
        if (signal.aborted) throw signal.reason ?? err;
        // A server silent for the whole wait is not asked again: another try would wait as long.
        if (!isRetryableTransportError(err) || attempt >= this.tuning.retry.retries || isSilentFor(err, answerMs)) {
          throw transportError(err, endpoint.url, proxy);
        }
        await waitAfterFailure(attempt, this.tuning.retry, err, 0, signal, this.tuning.onRetry);
        continue;
      }
      if (response.statusCode >= 200 && response.statusCode < 300) {
        refuseOpaqueEncoding(response, endpoint.url);
        const identity = identityOf(response.headers);
        // A whole file in answer to the Range probe: the server ignores Range, whatever its
        // Accept-Ranges says (some do), so nothing may be read by Range from it.
        if (probe > 0) identity.acceptsRanges = false;
        return { url: response.url, response, identity };
      }
      await response.body.dump({ limit: 64 << 10 }).catch(() => {});
      // An empty file has no byte 0 (416); webfs answers 400 to a range past the end of a file
      // smaller than the probe. Either way, a plain GET follows.
      if ((response.statusCode === 416 || response.statusCode === 400) && probe) {
        probe = 0;
        continue;
      }
      if (!isRetryableStatus(response.statusCode) || attempt >= this.tuning.retry.retries) {
        // After a redirect to another host, say that credentials stayed behind only if there were any.
        const heldBack = endpoint.auth !== undefined || Object.keys(endpoint.headers).length > 0;
        throw statusError(response.statusCode, response.url, endpoint.auth?.username, heldBack ? endpoint.url : response.url, undefined, 'authorization' in endpoint.headers);
      }
      await waitForBusyServer(attempt, this.tuning.retry, response, signal, this.tuning.onRetry);
    }
  }
}

/**
 * A body in a content coding that format detection would not see through (gzip and zstd have
 * magic bytes and are unwrapped like files): imported as it comes, it would be a disk of encoded
 * bytes. We ask for none (Accept-Encoding: identity); a server may send one all the same.
 */
function refuseOpaqueEncoding(response: HttpResponse, url: URL): void {
  const encoding = headerValue(response.headers, 'content-encoding')?.trim().toLowerCase();
  if (!encoding || !/\b(deflate|br|compress|x-compress)\b/.test(encoding)) return;
  discardBody(response);
  throw cannotConnect(
    `${redactedUrl(url)} sent the image with Content-Encoding: ${encoding}, which would be imported as encoded bytes; have the server send the file as stored`,
  );
}

interface FirstAnswer {
  /** Where the answer came from, after redirects. */
  url: URL;
  identity: ResourceIdentity;
  /** The stream's first response; none after a Range probe (the stream then sends its own GET). */
  response?: HttpResponse;
  /** The first bytes, when the first answer was a Range probe (its body is then consumed). */
  head?: Buffer;
  /** How long the probe's answer took on the direct client once connected: about one round trip. */
  probeWaitMs?: number;
}

/** The file's identity from a 206 answer to `bytes=0-(probe-1)`, or undefined if it does not add up. */
function probedIdentity(headers: IncomingHttpHeaders, probe: number): ResourceIdentity | undefined {
  const range = parseContentRange(headerValue(headers, 'content-range'));
  const identity = identityOf(headers);
  if (!range || range.total === undefined || range.start !== 0 || range.end !== Math.min(probe, range.total) - 1) return undefined;
  if (identity.size !== range.end + 1) return undefined; // content-encoded, or a length that disagrees
  return { ...identity, size: range.total, acceptsRanges: true };
}
