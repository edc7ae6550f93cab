import type { Logger, SourceSpec } from '../request.js';
import type { OpenedSource, Source } from './source.js';
import type { RetryNotice } from './http/retry-policy.js';
import { FileSource } from './file-source.js';
import { StdinSource } from './stdin-source.js';
import { abortedError, usageError } from '../errors.js';

/**
 * SourceSpec → the transport that fetches it. Network transports load on first use: local imports
 * start faster. `log` hears of retries (a dropped or stalled download), which are otherwise silent
 * until the retry budget runs out.
 */
async function resolveSource(spec: SourceSpec, log?: Logger): Promise<Source> {
  switch (spec.kind) {
    case 'file':
      return new FileSource(spec.path);
    case 'stdin':
      return new StdinSource();
    case 'custom':
      return spec.source;
    case 'http':
      return new (await import('./http/index.js')).HttpSource(spec.url, spec.transport, {
        ...retryNotices(log),
        ...(spec.wholeFile ? { randomAccess: false } : {}),
      });
    case 'registry':
      return new (await import('./registry/index.js')).RegistrySource(spec.url, spec.transport, retryNotices(log));
    case 'blank':
      throw usageError('a blank disk has no source to open');
  }
}

/**
 * Resolves and opens a source, for every pipeline that reads one. A cancel while connecting is
 * said as a cancel, not as the transport's abort. The stream gets a listener at once: its errors
 * reach its reader (SourceTap.attach passes on one that came first), but until a reader attaches
 * (the head and an .xz index are read by random access first; a seekable qcow2 never reads the
 * stream), none may go unheard and crash the process.
 */
export async function openSource(spec: SourceSpec, signal: AbortSignal, log?: Logger): Promise<{ source: Source; opened: OpenedSource }> {
  const source = await resolveSource(spec, log);
  const opened = await source.open(signal).catch((err: unknown) => {
    throw abortedError(err, signal);
  });
  opened.stream.on('error', () => {});
  return { source, opened };
}

function retryNotices(log: Logger | undefined): { onRetry?: RetryNotice } {
  if (!log) return {};
  return {
    onRetry: (reason, received, delayMs, rangeStart) => {
      const what =
        rangeStart !== undefined
          ? `read of the bytes from ${rangeStart} ${received > 0 ? `interrupted after ${received} bytes` : 'failed'}`
          : received > 0
            ? `download interrupted after ${received} bytes`
            : 'request failed';
      const wait = delayMs >= 1000 ? ` in ${Math.round(delayMs / 100) / 10} s` : '';
      log.warn({ reason, received, delayMs, rangeStart }, `${what} (${reason}); retrying${wait}`);
    },
  };
}
