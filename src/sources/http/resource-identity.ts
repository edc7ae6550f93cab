/** What identifies the bytes being downloaded, so a resumed or ranged answer is known to be the same file. */
import type { IncomingHttpHeaders } from 'node:http';
import { headerValue } from './http-request.js';
import { SourceChangedError, type ImportError } from '../../errors.js';

export interface ResourceIdentity {
  /** Content-Length of the full resource, when sent (and the body is not content-encoded). */
  size?: number;
  etag?: string;
  lastModified?: string;
  /** The server said `Accept-Ranges: bytes`. */
  acceptsRanges: boolean;
}

export function identityOf(headers: IncomingHttpHeaders): ResourceIdentity {
  const encoding = headerValue(headers, 'content-encoding');
  const lengthText = headerValue(headers, 'content-length');
  const length = lengthText !== undefined && /^\d+$/.test(lengthText.trim()) ? Number(lengthText) : undefined;
  const plainBody = !encoding || encoding.trim().toLowerCase() === 'identity';
  return {
    size: plainBody && length !== undefined && Number.isSafeInteger(length) ? length : undefined,
    etag: headerValue(headers, 'etag'),
    lastModified: headerValue(headers, 'last-modified'),
    acceptsRanges: plainBody && /\bbytes\b/i.test(headerValue(headers, 'accept-ranges') ?? ''),
  };
}

/** `If-Range` needs a strong ETag (RFC 9110 §13.1.5); a Last-Modified date is the fallback. */
export function ifRangeValue(identity: ResourceIdentity): string | undefined {
  if (identity.etag && !identity.etag.startsWith('W/')) return identity.etag;
  return identity.lastModified;
}

/** Whether a full (200) answer still describes the resource first seen. Unknown counts as same. */
export function sameResource(first: ResourceIdentity, now: ResourceIdentity): boolean {
  if (first.etag && now.etag && first.etag !== now.etag) return false;
  if (first.lastModified && now.lastModified && first.lastModified !== now.lastModified) return false;
  if (first.size !== undefined && now.size !== undefined && first.size !== now.size) return false;
  return true;
}

/**
 * Whether a 206 answer is a part of the resource first seen: ETag, Last-Modified and the
 * Content-Range total agree wherever both sides state them. If-Range asks the server for this,
 * but some servers and gateways ignore If-Range and serve the range of whatever file is there now.
 */
export function samePartialResource(first: ResourceIdentity, headers: IncomingHttpHeaders): boolean {
  const range = parseContentRange(headerValue(headers, 'content-range'));
  return sameResource(first, { ...identityOf(headers), size: range?.total });
}

/** The file behind the URL was replaced during the import (or its replicas disagree): see SourceChangedError. */
export function resourceChanged(where: string): ImportError {
  return new SourceChangedError(`${where} changed while it was being downloaded (ETag, Last-Modified or size differ); start the import again`);
}

export interface ContentRange {
  start: number;
  end: number;
  total?: number;
}

/** `bytes START-END/TOTAL` (TOTAL may be `*`). */
export function parseContentRange(value: string | undefined): ContentRange | undefined {
  const match = value ? /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value) : null;
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = Number(match[2]);
  const total = match[3] === '*' ? undefined : Number(match[3]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined;
  if (total !== undefined && (!Number.isSafeInteger(total) || end >= total)) return undefined;
  return { start, end, total };
}
