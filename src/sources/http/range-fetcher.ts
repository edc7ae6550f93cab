/** One byte range over HTTP: `Range` + `If-Range`, retried with backoff, checked to be the same file. */
import { cannotConnect } from '../../errors.js';
import { getFollowingRedirects, headerValue, type HttpEndpoint } from './http-request.js';
import { isRetryableStatus, isRetryableTransportError, statusText, transportError } from './http-errors.js';
import { ifRangeValue, parseContentRange, type ResourceIdentity } from './resource-identity.js';
import { redactedUrl } from './request-headers.js';
import { backoffDelay, sleep, type RetryPolicy } from './retry-policy.js';
import { readBodyFully } from './stall-watch.js';
import type { RangeFetcher } from './block-cache-reader.js';

class RetryableStatus extends Error {}

export function httpRangeFetcher(
  endpoint: HttpEndpoint,
  /** Where the first answer came from after redirects; ranges go straight there. */
  location: URL,
  identity: ResourceIdentity,
  options: { stallMs: number; retry: RetryPolicy; signal: AbortSignal; onRequest?: (start: number, length: number) => void },
): RangeFetcher {
  const validator = ifRangeValue(identity);
  const where = redactedUrl(endpoint.url);
  return async (start, length) => {
    const end = start + length - 1;
    for (let attempt = 0; ; attempt++) {
      try {
        options.onRequest?.(start, length);
        const headers = { range: `bytes=${start}-${end}`, ...(validator ? { 'if-range': validator } : {}) };
        const response = await getFollowingRedirects(endpoint, headers, options.signal, location);
        if (response.statusCode === 206) {
          const range = parseContentRange(headerValue(response.headers, 'content-range'));
          if (range?.start !== start || range.end !== end) {
            response.body.destroy();
            throw cannotConnect(`${where} answered bytes ${start}-${end} with ${headerValue(response.headers, 'content-range') ?? 'no Content-Range'}`);
          }
          return await readBodyFully(response.body as never, options.stallMs, length);
        }
        response.body.destroy();
        if (response.statusCode === 200) {
          throw cannotConnect(`${where} changed while it was being read, or stopped honouring Range requests; start the import again`);
        }
        if (isRetryableStatus(response.statusCode)) throw new RetryableStatus(statusText(response.statusCode));
        throw cannotConnect(`reading bytes ${start}-${end} of ${where}: expected status code 206, got ${response.statusCode}. Status: ${statusText(response.statusCode)}`);
      } catch (err) {
        if (options.signal.aborted) throw options.signal.reason ?? err;
        const retryable = err instanceof RetryableStatus || isRetryableTransportError(err);
        if (!retryable || attempt >= options.retry.retries) {
          throw transportError(err, endpoint.url, endpoint.dispatchers.proxyFor(location));
        }
        await sleep(backoffDelay(attempt, options.retry), options.signal);
      }
    }
  };
}
