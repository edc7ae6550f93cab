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
export function uploadBody(req: IncomingMessage, form: boolean, stallMs = 0): UploadBody {
  const cdiContentType = req.headers['x-cdi-content-type'];
  if (typeof cdiContentType === 'string' && CLONE_CONTENT_TYPES.has(cdiContentType)) {
    throw new BadUploadRequest(
      `x-cdi-content-type: ${cdiContentType} is a host-assisted clone stream, which this upload server does not take: let CDI's own cdi-uploadserver receive clones, or upload the disk image itself`,
    );
  }
  let stream: Transform;
  let size: number | undefined;
  let imageArrived = () => req.complete;
  let progressTotal: number | undefined;
  if (form) {
    const boundary = multipartBoundary(req.headers['content-type']);
    if (!boundary) {
      throw new BadUploadRequest(
        `the form upload needs Content-Type multipart/form-data with a boundary (got "${req.headers['content-type'] ?? 'none'}"): send it with curl -F file=@disk.img`,
      );
    }
    const part = new MultipartFilePart(boundary);
    stream = part;
    imageArrived = () => part.partDone;
    progressTotal = contentLength(req);
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
  // A form's fields after the file part do not matter once the image has all arrived.
  const lost = () => {
    if (!imageArrived()) stream.destroy(cut());
  };
  req.on('error', lost);
  req.on('close', lost);
  if (stallMs > 0) watchForStall(req, stream, stallMs, imageArrived, () => bodyBytes);
  req.pipe(stream);
  let opened = false;
  const source: Source = {
    description: 'the uploaded image',
    open: async () => {
      if (opened) throw new Error('an upload body can be read only once');
      opened = true;
      if (early) throw early;
      return { stream, ...(size !== undefined && { size }), ...(progressTotal !== undefined && { progressTotal }) };
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

/**
 * A client that stops sending without closing (its network gone, a laptop asleep: no FIN, no RST)
 * would hold the one upload slot, and every retry would get 503, until the deadline. Nothing
 * arriving for `stallMs` while the pipeline waits for the body ends the upload with a line that
 * says so; time spent waiting for the disk (the body stream full) does not count.
 */
function watchForStall(req: IncomingMessage, stream: Transform, stallMs: number, imageArrived: () => boolean, bodyBytes: () => number): void {
  let lastProgress = Date.now();
  req.on('data', () => (lastProgress = Date.now()));
  const timer = setInterval(() => {
    const now = Date.now();
    if (imageArrived() || stream.destroyed) return clearInterval(timer);
    if (stream.writableNeedDrain) lastProgress = now; // the writer is the slow side
    if (now - lastProgress < stallMs) return;
    clearInterval(timer);
    stream.destroy(
      cannotConnect(
        `the upload stalled: nothing arrived for ${Math.round(stallMs / 1000)} s after ${bodyBytes()} bytes of the body (the client's connection is gone?): upload again`,
      ),
    );
    req.socket.destroy();
  }, Math.max(10, Math.min(1000, stallMs / 4)));
  timer.unref();
  req.once('close', () => clearInterval(timer));
}
