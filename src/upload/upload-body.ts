/**
 * An upload request's body as a pipeline Source. The pipeline destroys its source stream when it
 * is done or fails; the body is therefore piped through a stream of its own, so that destroying
 * it leaves the request (and its socket) alive for the error response.
 */
import type { IncomingMessage } from 'node:http';
import { PassThrough, type Transform } from 'node:stream';
import type { Source } from '../sources/source.js';
import { cannotConnect } from '../errors.js';
import { MultipartFilePart, multipartBoundary } from './multipart-file-part.js';
import { BadUploadRequest } from './bad-upload-request.js';

export interface UploadBody {
  source: Source;
  /** Resolves when the pipeline has read the last byte of the image. */
  received: Promise<void>;
  /** Stops feeding the pipeline; the rest of the request is read and discarded. */
  detach(): void;
}

function contentLength(req: IncomingMessage): number | undefined {
  const text = req.headers['content-length'];
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const length = Number(text);
  return Number.isSafeInteger(length) ? length : undefined;
}

/** CDI's host-assisted clone streams (x-cdi-content-type): a clone source pod's tar or snappy stream, not a disk image. */
const CLONE_CONTENT_TYPES = new Set(['filesystem-clone', 'blockdevice-clone']);

/**
 * Throws BadUploadRequest (a 400) when a form upload is not multipart/form-data, and for a clone
 * stream: written as a disk, it would make a volume that holds the stream (found by a QA pass).
 */
export function uploadBody(req: IncomingMessage, form: boolean): UploadBody {
  const cdiContentType = req.headers['x-cdi-content-type'];
  if (typeof cdiContentType === 'string' && CLONE_CONTENT_TYPES.has(cdiContentType)) {
    throw new BadUploadRequest(
      `x-cdi-content-type: ${cdiContentType} is a host-assisted clone stream, which this upload server does not take: let CDI's own cdi-uploadserver receive clones, or upload the disk image itself`,
    );
  }
  let stream: Transform;
  let size: number | undefined;
  if (form) {
    const boundary = multipartBoundary(req.headers['content-type']);
    if (!boundary) {
      throw new BadUploadRequest(
        `the form upload needs Content-Type multipart/form-data with a boundary (got "${req.headers['content-type'] ?? 'none'}"): send it with curl -F file=@disk.img`,
      );
    }
    stream = new MultipartFilePart(boundary);
  } else {
    // `curl -F` where `--data-binary` was meant: the form's envelope would become part of the
    // disk (CDI writes it so). The form endpoints take the file part out.
    if (multipartBoundary(req.headers['content-type'])) {
      throw new BadUploadRequest(
        `the body is a multipart form (curl -F); this endpoint takes the image itself as the body: send it with curl --data-binary @disk.img, or use the form endpoint ${req.url?.includes('async') ? '/v1beta1/upload-form-async' : '/v1beta1/upload-form'}`,
      );
    }
    stream = new PassThrough();
    size = contentLength(req);
  }
  const received = new Promise<void>((resolve) => stream.once('end', resolve));
  // The pipeline listens for errors only once it opens the source, and the body may fail before
  // that (a small form without its part, a client gone): an 'error' event nobody listens to would
  // end the server. The first one is kept and thrown by open().
  let early: Error | undefined;
  stream.on('error', (err) => (early ??= err));
  // Node reports a client that went away as the bare word "aborted"; say what happened instead.
  let bodyBytes = 0;
  req.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
  const cut = () => cannotConnect(`the upload connection closed after ${bodyBytes} bytes of the body, before all of it arrived: upload again`);
  req.on('error', (err) => stream.destroy(req.complete ? err : cut()));
  req.on('close', () => {
    if (!req.complete) stream.destroy(cut());
  });
  req.pipe(stream);
  let opened = false;
  const source: Source = {
    description: 'the uploaded image',
    open: async () => {
      if (opened) throw new Error('an upload body can be read only once');
      opened = true;
      if (early) throw early;
      return size !== undefined ? { stream, size } : { stream };
    },
  };
  return {
    source,
    received,
    detach: () => {
      req.unpipe(stream);
      req.resume();
    },
  };
}
