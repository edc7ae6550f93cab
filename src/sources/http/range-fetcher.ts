/**
 * One byte range over HTTP: `Range` + `If-Range`, retried with backoff, checked to be the same file;
 * a body cut off part way is resumed from the first missing byte.
 */
import { cannotConnect, SourceChangedError } from '../../errors.js';
import { discardBody, getFollowingRedirects, headersFor, headerValue, type HttpEndpoint } from './http-request.js';
import { DirectRangeClient, UseGeneralPath, type DirectRangeAnswer } from './direct-range-client.js';
import { bodyBytesBefore, isRetryableStatus, isRetryableOnceAnswered, noteBodyBytes, RetryableFailure, StallError, statusText, transportError } from './http-errors.js';
import { identityOf, ifRangeValue, parseContentRange, resourceChanged, sameResource, samePartialResource, type ResourceIdentity } from './resource-identity.js';
import { redactedUrl } from './request-headers.js';
import { retryAfterMs, StallBudget, waitAfterFailure, type RetryNotice, type RetryPolicy } from './retry-policy.js';
import { readBodyFully } from './stall-watch.js';
import type { RangeFetcher } from './block-cache-reader.js';


export function httpRangeFetcher(
  endpoint: HttpEndpoint,
  /** Where the first answer came from after redirects; ranges go straight there. */
  location: URL,
  identity: ResourceIdentity,
  options: {
    stallMs: number;
    retry: RetryPolicy;
    signal: AbortSignal;
    /** Told of each retry, with the file offset the read resumes at. */
    onRetry?: RetryNotice;
    /** Range reads without a proxy go through this client (see direct-range-client.ts). */
    direct?: DirectRangeClient;
  },
): RangeFetcher {
  let validator = ifRangeValue(identity);
  const where = redactedUrl(endpoint.url);
  let directHeaders = checkedHeaders(endpoint, location, identity);
  /**
   * Ruby's WEBrick answers a Range request whose If-Range matches with 304 Not Modified (as if it
   * were If-None-Match). The reads go on without If-Range then: every 206 is still checked
   * against the ETag, Last-Modified and size first seen (samePartialResource).
   */
  const refusesIfRange = (statusCode: number): boolean => {
    if (statusCode !== 304 || validator === undefined) return false;
    validator = undefined;
    directHeaders = headersFor(endpoint, location, {});
    return true;
  };
  // A server that needs the general path once (chunked bodies, redirects…) gets it from then on.
  let direct = options.direct && DirectRangeClient.suits(endpoint.dispatchers, location, directHeaders) ? options.direct : undefined;
  // Over every read: each one's stalls are few, but a server that stalls after a little on every
  // request would make each read of a large image wait a few stall timeouts.
  const stalls = new StallBudget(options.retry.maxResumes, options.stallMs);
  // Whole-file answers to Range reads since the last answer that honoured Range (see RangeIgnored).
  let ignoredInARow = 0;
  return async (start, length, into) => {
    const end = start + length - 1;
    const target = into ?? Buffer.allocUnsafe(length);
    // Bytes of the range already in `target`: after a drop mid-body, only the rest is asked for.
    let done = 0;
    let resumes = 0;
    for (let failures = 0; ; ) {
      const from = start + done;
      const rest = target.subarray(done, length);
      const headers = { range: `bytes=${from}-${end}`, ...(validator ? { 'if-range': validator } : {}) };
      try {
        let answer: DirectRangeAnswer | undefined;
        if (direct) {
          try {
            answer = await direct.read(location, { ...directHeaders, ...headers }, from, length - done, rest, options.stallMs, options.signal);
          } catch (err) {
            if (!(err instanceof UseGeneralPath)) throw err;
            direct = undefined;
          }
        }
        if (answer) {
          if (refusesIfRange(answer.statusCode)) continue;
          if (answer.data && !samePartialResource(identity, answer.headers)) throw resourceChanged(where);
          if (answer.data) {
            stalls.progressed(length - done);
            ignoredInARow = 0;
            return target;
          }
          throw notTheRange(where, from, end, identity, answer);
        }
        const response = await getFollowingRedirects(endpoint, headers, options.signal, location);
        const contentRange = headerValue(response.headers, 'content-range');
        const range = parseContentRange(contentRange);
        // The bytes asked for, or their first part: RFC 9110 lets a server send less than asked.
        if (response.statusCode === 206 && range?.start === from && range.end <= end) {
          if (!samePartialResource(identity, response.headers)) {
            discardBody(response);
            throw resourceChanged(where);
          }
          const body = await readBodyFully(response.body as never, options.stallMs, range.end - from + 1, rest);
          ignoredInARow = 0;
          if (body.length === length - done) {
            stalls.progressed(body.length);
            return target;
          }
          // Less than asked (a shorter range, or a body shorter than its Content-Range): the bytes
          // stay, and the rest is asked for as after a drop.
          throw noteBodyBytes(new RetryableFailure(`it answered bytes ${from}-${end} with ${body.length} bytes (${contentRange})`), body.length);
        }
        discardBody(response);
        if (refusesIfRange(response.statusCode)) continue;
        throw notTheRange(where, from, end, identity, { statusCode: response.statusCode, contentRange, headers: response.headers });
      } catch (err) {
        if (options.signal.aborted) throw options.signal.reason ?? err;
        if (err instanceof RangeIgnored) {
          // Asked again at once: a server that ignores Range now and then is read on by Range; one
          // that keeps ignoring it gets the whole-file download (SourceChangedError).
          if (++ignoredInARow < MAX_RANGE_IGNORED_IN_A_ROW) continue;
          throw rangeNotHonoured(where);
        }
        const retryable = err instanceof RetryableFailure || isRetryableOnceAnswered(err);
        // A drop after some of the body: keep those bytes (If-Range guards that the file is the
        // same) and, within the resume budget, count it as progress rather than a failure.
        const progress = retryable ? bodyBytesBefore(err) : 0;
        done += progress;
        stalls.progressed(progress);
        if (progress > 0 && resumes++ < options.retry.maxResumes) failures = 0;
        if (err instanceof StallError && !stalls.stalled()) {
          throw cannotConnect(
            `reading ${where} by Range failed: it ${err.bytes === 0 ? 'went silent' : 'slowed to a trickle'} ${stalls.counted} times with little data in between (${err.message}, bytes ${start}-${end}); check the network or the server`,
            err,
          );
        }
        if (!retryable || failures >= options.retry.retries) {
          throw transportError(err, endpoint.url, endpoint.dispatchers.proxyFor(location));
        }
        await waitAfterFailure(failures++, options.retry, err, done, options.signal, options.onRetry, start);
      }
    }
  };
}

/**
 * A 200 with the whole file, the same file as first seen, to a Range read: the server ignored Range
 * this time (a QA pass's server did for one request in five, and one such answer sent the import to
 * a whole-file download that then needed scratch space). More of them in a row than reads in
 * flight (eight) mean it stopped honouring Range.
 */
class RangeIgnored extends Error {}
const MAX_RANGE_IGNORED_IN_A_ROW = 16;

const rangeNotHonoured = (where: string) =>
  new SourceChangedError(`${where} changed while it was being read, or stopped honouring Range requests; start the import again`);

/** The error for an answer that is not bytes `from`-`end`: retryable for a busy server, final otherwise. */
function notTheRange(
  where: string,
  from: number,
  end: number,
  identity: ResourceIdentity,
  answer: Pick<DirectRangeAnswer, 'statusCode' | 'contentRange' | 'headers'>,
): Error {
  const { statusCode, contentRange } = answer;
  if (statusCode === 206) return cannotConnect(`${where} answered bytes ${from}-${end} with ${contentRange ?? 'no Content-Range'}; check the server`);
  if (statusCode === 200) {
    if (sameResource(identity, identityOf(answer.headers))) return new RangeIgnored();
    return rangeNotHonoured(where);
  }
  if (isRetryableStatus(statusCode)) return new RetryableFailure(statusText(statusCode), retryAfterMs(answer.headers));
  return cannotConnect(`reading bytes ${from}-${end} of ${where}: expected status code 206, got ${statusCode}. Status: ${statusText(statusCode)}`);
}

/** The headers of a Range read at `location`: credentials (same origin only), extra headers, If-Range. */
export function checkedHeaders(endpoint: HttpEndpoint, location: URL, identity: ResourceIdentity): Record<string, string> {
  const validator = ifRangeValue(identity);
  return headersFor(endpoint, location, validator ? { 'if-range': validator } : {});
}
