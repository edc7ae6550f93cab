/**
 * The source's byte stream: the body of the first answer, continued after a drop or stall
 * with `Range` + `If-Range` from the byte where it stopped, or re-read from the start (the
 * already delivered prefix dropped) when the server cannot resume. Every byte reaches the
 * consumer exactly once, in order, so a checksum over the stream is a checksum of the file.
 */
import { Readable } from 'node:stream';
import { cannotConnect, ImportError, oneLine } from '../../errors.js';
import { discardBody, getFollowingRedirects, headerValue, type HttpEndpoint, type HttpResponse } from './http-request.js';
import { isRetryableStatus, isRetryableOnceAnswered, RetryableFailure, StallError, statusError, statusText, transportError } from './http-errors.js';
import { identityOf, ifRangeValue, parseContentRange, resourceChanged, samePartialResource, sameResource, type ResourceIdentity } from './resource-identity.js';
import { redactedUrl } from './request-headers.js';
import { retryAfterMs, StallBudget, waitAfterFailure, type RetryNotice, type RetryPolicy } from './retry-policy.js';
import { StallWatchdog } from './stall-watch.js';
import { UseGeneralPath, type DirectRangeClient } from './direct-range-client.js';
import { DirectRangeBody } from './direct-range-body.js';

type Body = HttpResponse['body'] | DirectRangeBody;

const BATCH_BYTES = 1 << 20;

export interface ResumableBodyOptions {
  stallMs: number;
  retry: RetryPolicy;
  /** Called with each retry's reason, for logs. */
  onRetry?: RetryNotice;
  /**
   * For a server that honours Range, with a known size and no proxy: the body is fetched as Range
   * requests on this client (see direct-range-body.ts), which the stream owns and closes. `headers`
   * carry the credentials and If-Range.
   */
  direct?: { client: DirectRangeClient; location: URL; headers: Record<string, string> };
  /**
   * How a resume's GET is sent (default: to the endpoint, following redirects). The registry
   * sends it through its client, which fetches a new Bearer token when the one the download
   * started with has expired by then.
   */
  request?: (headers: Record<string, string>, signal: AbortSignal) => Promise<HttpResponse>;
}

/** Bytes received since the previous resume that make a resume not count against the budget. */
const PRODUCTIVE_RESUME_BYTES = 256 << 10;

export class ResumableBody extends Readable {
  private received = 0;
  private failuresInARow = 0;
  /** The server answered If-Range with 304: resumes go without it. */
  private ifRangeRefused = false;
  /** Retries so far, and those of them that used the resume budget (see PRODUCTIVE_RESUME_BYTES). */
  private resumes = 0;
  private unproductiveResumes = 0;
  private receivedAtLastResume = 0;
  private readonly stalls: StallBudget;
  private running = false;
  private current: Body | undefined;
  private wakeReader: (() => void) | undefined;
  private readonly abort = new AbortController();
  private direct: ResumableBodyOptions['direct'];

  constructor(
    private readonly endpoint: HttpEndpoint,
    /** The answer whose body starts the stream; without one, the stream sends its GET on first read. */
    first: HttpResponse | undefined,
    private readonly identity: ResourceIdentity,
    private readonly options: ResumableBodyOptions,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.current = first?.body;
    this.direct = options.direct;
    this.stalls = new StallBudget(options.retry.maxResumes, options.stallMs);
  }

  /** Bytes delivered so far. */
  get bytesReceived(): number {
    return this.received;
  }

  override _read(): void {
    if (!this.running) {
      this.running = true;
      void this.run();
      return;
    }
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.abort.abort(err ?? new Error('stream destroyed'));
    this.current?.destroy();
    this.current = undefined;
    this.direct?.client.close();
    this.wakeReader?.();
    callback(err);
  }

  private async run(): Promise<void> {
    let skip = 0;
    while (!this.destroyed) {
      try {
        if (!this.current) ({ body: this.current, skip } = await this.reopen());
        await this.pump(this.current, skip);
        this.current = undefined;
        if (this.destroyed) return;
        const size = this.identity.size;
        if (size !== undefined && this.received < size) {
          throw new RetryableFailure(`the body ended after ${this.received} of ${size} bytes (Content-Length)`);
        }
        this.direct?.client.close();
        this.push(null);
        return;
      } catch (err) {
        this.current?.destroy();
        this.current = undefined;
        if (this.destroyed) return;
        if (err instanceof UseGeneralPath) {
          // The server answered a Range request oddly: continue with one undici GET, not a failure.
          this.direct?.client.close();
          this.direct = undefined;
          continue;
        }
        const retryable = err instanceof RetryableFailure || isRetryableOnceAnswered(err);
        if (!retryable) return void this.destroy(this.explain(err));
        // A resume after a good stretch of bytes is what resuming is for: only resumes after little
        // progress use the budget, so a large image over a link that drops every so often finishes.
        // Stalls have a budget of their own (StallBudget), which only a long stretch forgives.
        const progress = this.received - this.receivedAtLastResume;
        this.stalls.progressed(progress);
        const stall = err instanceof StallError;
        const unproductiveDrop = !stall && progress < PRODUCTIVE_RESUME_BYTES;
        const budgetLeft = stall ? this.stalls.stalled() : !unproductiveDrop || this.unproductiveResumes < this.options.retry.maxResumes;
        if (this.failuresInARow >= this.options.retry.retries || !budgetLeft) {
          const reason = oneLine(err);
          return void this.destroy(
            cannotConnect(
              `download of ${redactedUrl(this.endpoint.url)} failed after ${this.received}${this.identity.size !== undefined ? ` of ${this.identity.size}` : ''} bytes and ${this.resumes} retries: ${reason}`,
              err,
            ),
          );
        }
        const attempt = this.failuresInARow++;
        this.resumes++;
        if (unproductiveDrop) this.unproductiveResumes++;
        this.receivedAtLastResume = this.received;
        try {
          await waitAfterFailure(attempt, this.options.retry, err, this.received, this.abort.signal, this.options.onRetry);
        } catch {
          return;
        }
      }
    }
  }

  private explain(err: unknown): ImportError {
    return transportError(err, this.endpoint.url, this.endpoint.dispatchers.proxyFor(this.endpoint.url));
  }

  private async pump(body: Body, skip: number): Promise<void> {
    const size = this.identity.size;
    // A stall is a stall timeout with (almost) nothing from the socket. The direct client watches its sockets itself
    // (their idle timeout); its 1 MiB parts would look like stalls here on a slow link.
    const watchdog = body instanceof DirectRangeBody ? undefined : new StallWatchdog(this.options.stallMs, (err) => body.destroy(err));
    // Socket reads arrive in 64 KiB pieces; handing them on in ~1 MiB batches saves every stage
    // downstream (tap, decompressor, writer) most of its per-chunk cost.
    let batch: Buffer[] = [];
    let batchBytes = 0;
    const takeBatch = () => {
      const chunk = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batchBytes);
      batch = [];
      batchBytes = 0;
      return chunk;
    };
    try {
      watchdog?.waiting();
      for await (const data of body as AsyncIterable<Buffer>) {
        if (this.destroyed) return;
        // Every socket chunk counts as progress, not only full batches: a slow but steady link is not a stall.
        watchdog?.received(data.length);
        let chunk = data;
        if (skip > 0) {
          if (chunk.length <= skip) {
            skip -= chunk.length;
            continue;
          }
          chunk = chunk.subarray(skip);
          skip = 0;
        }
        this.received += chunk.length;
        this.failuresInARow = 0;
        if (size !== undefined && this.received > size) {
          throw cannotConnect(`${redactedUrl(this.endpoint.url)} sent more bytes than its Content-Length of ${size}`);
        }
        batch.push(chunk);
        batchBytes += chunk.length;
        if (batchBytes < BATCH_BYTES) continue;
        if (!this.push(takeBatch())) {
          watchdog?.idle();
          await new Promise<void>((resolve) => (this.wakeReader = resolve));
          if (this.destroyed) return;
        }
        watchdog?.waiting();
      }
    } finally {
      watchdog?.stop();
      // Bytes counted as received are delivered, whether the body ended or broke off.
      if (batchBytes > 0 && !this.destroyed) this.push(takeBatch());
    }
  }

  /** A new answer that continues at `received`, or the whole file again with the prefix to drop. */
  private async reopen(): Promise<{ body: Body; skip: number }> {
    const { size } = this.identity;
    if (this.direct && size !== undefined) {
      const { client, location, headers } = this.direct;
      return { body: new DirectRangeBody(client, location, headers, this.received, { ...this.identity, size }, this.options.stallMs), skip: 0 };
    }
    // A server that answered If-Range with 304 (Ruby's WEBrick) is asked without it: each 206 is
    // still checked against the identity first seen.
    const validator = this.ifRangeRefused ? undefined : ifRangeValue(this.identity);
    // Range is worth asking even without Accept-Ranges (many servers omit it); a 200 answer
    // is handled as a restart.
    const resuming = this.received > 0;
    const headers: Record<string, string> = resuming
      ? { range: `bytes=${this.received}-`, ...(validator ? { 'if-range': validator } : {}) }
      : {};
    const response = await (this.options.request ?? ((h, signal) => getFollowingRedirects(this.endpoint, h, signal)))(headers, this.abort.signal);
    const { statusCode } = response;
    const where = redactedUrl(this.endpoint.url);
    if (statusCode === 206 && resuming) {
      const range = parseContentRange(headerValue(response.headers, 'content-range'));
      if (range?.start === this.received && (this.identity.size === undefined || range.total === this.identity.size)) {
        if (samePartialResource(this.identity, response.headers)) return { body: response.body, skip: 0 };
        discardBody(response);
        throw resourceChanged(where);
      }
      discardBody(response);
      throw cannotConnect(`${where} answered a resume at byte ${this.received} with the wrong range (${headerValue(response.headers, 'content-range') ?? 'no Content-Range'})`);
    }
    if (statusCode === 200) {
      // The server ignored Range, or If-Range found the file changed: re-read from the start.
      if (!sameResource(this.identity, identityOf(response.headers))) {
        discardBody(response);
        throw resourceChanged(where);
      }
      return { body: response.body, skip: this.received };
    }
    await response.body.dump({ limit: 64 << 10 }).catch(() => {});
    if (statusCode === 304 && validator !== undefined) {
      this.ifRangeRefused = true;
      return this.reopen();
    }
    if (isRetryableStatus(statusCode)) throw new RetryableFailure(`the server answered ${statusText(statusCode)}`, retryAfterMs(response.headers));
    if (!resuming) throw statusError(statusCode, this.endpoint.url, this.endpoint.auth?.username, this.endpoint.url, undefined, 'authorization' in this.endpoint.headers);
    if (statusCode === 416) {
      throw cannotConnect(
        `${where} closed the connection after ${this.received}${this.identity.size !== undefined ? ` of ${this.identity.size}` : ''} bytes (Content-Length) and cannot send the rest: ${statusText(statusCode)}`,
      );
    }
    throw cannotConnect(`resuming ${where} at byte ${this.received}: expected status code 206, got ${statusCode}. Status: ${statusText(statusCode)}`);
  }
}
