/**
 * CDI's upload server (SPEC §5.3, `pkg/uploadserver`): one HTTPS server that accepts exactly one
 * successful upload, runs it through the same pipeline as every other source, and then reports
 * how it ended. A failed upload leaves the server ready for another try, as in CDI.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { fileProblem, ImportError, isImportError, oneLine, usageError } from '../errors.js';
import type { ImportContext, ImportRequest, ImportResult, TargetSpec } from '../request.js';
import type { AppLogger } from '../util/logger.js';
import { certificatesIn } from '../sources/http/tls-options.js';
import { HEALTHZ_PATH, uploadRoute, type UploadRoute } from './upload-routes.js';
import { uploadBody } from './upload-body.js';
import { BadUploadRequest } from './bad-upload-request.js';
import { emptyVolume } from '../pod/empty-volume.js';
import type { UploadConfig } from './upload-environment.js';

export type ImportFunction = (request: ImportRequest, ctx: ImportContext) => Promise<ImportResult>;

/** How the server ended; the front door turns it into a termination message and exit code. */
export type UploadOutcome =
  | { kind: 'complete'; result: ImportResult }
  | { kind: 'deadline' }
  /** An async upload failed after its 200 was sent: nobody can retry on that connection. */
  | { kind: 'failed'; error: unknown }
  | { kind: 'stopped'; signal: NodeJS.Signals };

type State = 'idle' | 'uploading' | 'processing' | 'done';

/** Go's http.Server finishes in-flight responses on Shutdown; ours get this long. */
const CLOSE_GRACE_MS = 2_000;
/** How long the rest of a refused or failed upload's body is read and dropped before hanging up. */
const DISCARD_BODY_MS = 30_000;

function readPem(file: string, variable: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw usageError(`cannot read ${variable} ${file}: ${fileProblem(err)}`);
  }
}

/**
 * The CA bundle that signs client certificates must hold one: with none, every handshake would
 * fail while /healthz said OK. CDI's upload server refuses to start then too ("Invalid ca cert file").
 */
function readClientCa(file: string): Buffer {
  const pem = readPem(file, 'CLIENT_CERT_FILE');
  const valid = certificatesIn(pem.toString('latin1')).filter((block) => {
    try {
      return new X509Certificate(block) !== undefined;
    } catch {
      return false;
    }
  });
  if (valid.length === 0) throw usageError(`CLIENT_CERT_FILE ${file} holds no PEM certificate: give the CA bundle that signs the upload proxy's client certificate`);
  return pem;
}

/** The Common Name(s) of the client's certificate; Node gives an array when there are several. */
function clientCommonNames(req: IncomingMessage): string[] {
  const socket = req.socket as TLSSocket;
  if (typeof socket.getPeerCertificate !== 'function') return [];
  const cn = socket.getPeerCertificate()?.subject?.CN as string | string[] | undefined;
  if (cn === undefined) return [];
  return Array.isArray(cn) ? cn : [cn];
}

export class UploadServer {
  private state: State = 'idle';
  private readonly server: https.Server;
  private healthz?: http.Server;
  private current?: AbortController;
  /** How the server ended (the first outcome). */
  private endedAs?: UploadOutcome['kind'];
  private settle!: (outcome: UploadOutcome) => void;
  /** Resolves once, with the first way the server ends. */
  readonly outcome: Promise<UploadOutcome>;
  private deadlineTimer?: NodeJS.Timeout;

  constructor(
    private readonly config: UploadConfig,
    private readonly log: AppLogger,
    private readonly importImage: ImportFunction,
  ) {
    this.outcome = new Promise((resolve) => (this.settle = resolve));
    try {
      this.server = https.createServer(
        {
          cert: readPem(config.tlsCertFile, 'TLS_CERT_FILE'),
          key: readPem(config.tlsKeyFile, 'TLS_KEY_FILE'),
          ca: readClientCa(config.clientCaFile),
          // CDI: tls.RequireAndVerifyClientCert. A client without a certificate signed by the CA
          // does not get past the handshake.
          requestCert: true,
          rejectUnauthorized: true,
          // Uploads of large images take longer than Node's default 5-minute request timeout.
          requestTimeout: 0,
          // As Go's listeners (CDI's server): a peer gone without a word is found out by the kernel.
          keepAlive: true,
          keepAliveInitialDelay: 15_000,
        },
        (req, res) => this.handle(req, res),
      );
    } catch (err) {
      if (isImportError(err)) throw err;
      throw usageError(`cannot use the TLS files (TLS_CERT_FILE ${config.tlsCertFile}, TLS_KEY_FILE ${config.tlsKeyFile}, CLIENT_CERT_FILE ${config.clientCaFile}): ${oneLine(err)}`);
    }
    this.server.on('tlsClientError', (err) => this.log.debug({ error: oneLine(err) }, 'TLS handshake refused'));
    // `Expect: 100-continue` (curl sends it for bodies over 1 MiB): refusals (401, 503, 409...) go
    // out before the client sends the body, as with Go's server; accepted uploads get the 100.
    this.server.on('checkContinue', (req, res) => this.handle(req, res));
  }

  /** Listens; returns the bound port (LISTEN_PORT=0 picks a free one). */
  async start(): Promise<number> {
    const { listenAddress, listenPort, healthzPort } = this.config;
    const port = await listen(this.server, listenPort, listenAddress);
    if (healthzPort !== undefined) {
      const healthz = http.createServer((req, res) => {
        if ((req.url ?? '').split('?')[0] === HEALTHZ_PATH) return void res.end('OK');
        res.statusCode = 404;
        res.end();
      });
      // The readiness probe is a convenience: a busy port must not stop the upload.
      await listen(healthz, healthzPort, '').then(
        () => (this.healthz = healthz),
        (err) => this.log.warn({ error: oneLine(err), port: healthzPort }, 'could not serve /healthz over plain HTTP'),
      );
    }
    this.log.info({ address: listenAddress, port, destination: this.config.destination }, 'Running upload server');
    this.armDeadline();
    return port;
  }

  /** SIGTERM / SIGINT: stop any upload and end. */
  stop(signal: NodeJS.Signals): void {
    this.current?.abort(new ImportError('cancelled', `upload cancelled: received ${signal}`));
    this.end({ kind: 'stopped', signal });
  }

  /** Stops listening and drops the connections left after a short grace. */
  async close(): Promise<void> {
    clearTimeout(this.deadlineTimer);
    this.healthz?.close();
    this.healthz?.closeAllConnections();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const grace = setTimeout(() => this.server.closeAllConnections(), CLOSE_GRACE_MS);
    await closed;
    clearTimeout(grace);
  }

  /** Re-read after every await: the deadline or a signal may have ended the server meanwhile. */
  private ended(): boolean {
    return this.state === 'done';
  }

  /** The first call decides the outcome (settling a promise twice keeps the first value). */
  private end(outcome: UploadOutcome): void {
    this.state = 'done';
    this.endedAs ??= outcome.kind;
    clearTimeout(this.deadlineTimer);
    this.settle(outcome);
  }

  private armDeadline(): void {
    const deadline = this.config.deadline;
    if (!deadline) return;
    const wait = deadline.getTime() - Date.now();
    // setTimeout holds at most ~24.8 days; re-arm for longer deadlines.
    const step = Math.min(Math.max(wait, 0), 2 ** 31 - 1);
    this.deadlineTimer = setTimeout(() => {
      if (Date.now() < deadline.getTime()) return this.armDeadline();
      if (this.ended()) return;
      this.log.warn({ deadline: deadline.toISOString() }, 'Deadline passed: stopping the upload server');
      this.current?.abort(new ImportError('cancelled', 'upload cancelled: the deadline passed'));
      this.end({ kind: 'deadline' });
    }, step);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '';
    if (url.split('?')[0] === HEALTHZ_PATH) return void res.end('OK');
    const route = uploadRoute(url);
    // CDI answers HEAD on the async endpoints: the proxy probes them to pick sync or async.
    if (route?.async && req.method === 'HEAD') return void res.end();
    if (!route || req.method !== 'POST') {
      // A line in the pod's log for a client that calls the wrong place (curl -T is a PUT).
      this.log.warn({ method: req.method, path: url.split('?')[0] }, 'no such upload endpoint (POST to /v1beta1/upload and the like)');
      return this.reply(req, res, 404);
    }

    const names = clientCommonNames(req);
    if (!names.includes(this.config.clientName)) {
      this.log.warn({ clientNames: names }, 'upload refused: the client certificate is not for the expected client');
      return this.reply(req, res, 401);
    }
    if (this.state === 'uploading' || this.state === 'processing') {
      this.log.warn('Got concurrent upload request');
      return this.reply(req, res, 503);
    }
    if (this.state === 'done') {
      // 409 says "this volume has its upload": only true after one completed.
      if (this.endedAs !== 'complete') return this.reply(req, res, 503, 'the upload server is shutting down');
      this.log.warn('Got upload request after already done');
      return this.reply(req, res, 409);
    }
    this.state = 'uploading';
    if (/100-continue/i.test(req.headers.expect ?? '')) res.writeContinue();
    this.upload(req, res, route).catch((err: unknown) => {
      // A bug, not a bad upload: say so, and stay ready for another try.
      this.log.error({ err }, 'internal error while handling an upload');
      if (!this.ended()) this.state = 'idle';
      this.reply(req, res, 500, `internal error: ${oneLine(err)}`);
    });
  }

  private async upload(req: IncomingMessage, res: ServerResponse, route: UploadRoute): Promise<void> {
    let body: ReturnType<typeof uploadBody>;
    try {
      body = uploadBody(req, route.form, this.config.stallSeconds * 1000);
    } catch (err) {
      if (!(err instanceof BadUploadRequest)) throw err;
      this.log.warn({ error: err.message }, 'upload refused');
      this.state = 'idle';
      return this.reply(req, res, 400, err.message);
    }
    const controller = new AbortController();
    this.current = controller;
    const request = this.importRequest(route, body.source);
    this.log.info({ contentType: request.contentType, async: route.async, form: route.form, target: request.target }, 'Upload started');
    let checked!: () => void;
    const sizeChecked = new Promise<void>((resolve) => (checked = resolve));
    let decoded!: () => void;
    const allDecoded = new Promise<void>((resolve) => (decoded = resolve));
    const before = fileIdentity(request.target);
    const importing = this.emptyVolumes(controller.signal)
      .then(() => this.importImage(request, { signal: controller.signal, log: this.log, onChecked: () => checked(), onSourceDecoded: () => decoded() }))
      .then(
      (result) => ({ ok: true as const, result }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    // Sync: answer when the import is complete. Async: as soon as the image has been read, its
    // size checked against the volume (an image that cannot fit gets its 400 however small it is)
    // and its compression undone to the end (a truncated or corrupt .gz/.xz/.zst gets its 500: by
    // then only the buffered last MiBs were left to decode).
    const readAndChecked = Promise.all([body.received, sizeChecked, allDecoded]).then(() => undefined);
    const first = route.async ? await Promise.race([importing, readAndChecked]) : await importing;

    if (first && !first.ok) {
      body.detach();
      this.removePartialTarget(request.target, before);
      if (this.ended()) return this.reply(req, res, 503, 'the upload server is shutting down');
      this.log.error({ error: oneLine(first.error), category: isImportError(first.error) ? first.error.category : 'internal' }, 'Saving stream failed');
      this.log.debug({ err: first.error }, 'upload failure details');
      this.current = undefined;
      this.state = 'idle'; // CDI lets the client try again
      const tooSmall = isImportError(first.error) && first.error.category === 'too-small';
      return this.reply(req, res, tooSmall || first.error instanceof BadUploadRequest ? 400 : 500, oneLine(first.error));
    }
    if (this.ended()) return this.reply(req, res, 503, 'the upload server is shutting down');

    if (first) {
      this.reply(req, res, 200);
      return this.complete(first.result);
    }
    // Async: the body is in; the rest of the import happens after the answer.
    this.state = 'processing';
    this.reply(req, res, 200);
    this.log.info('Returning success to caller, continue processing in background');
    const settled = await importing;
    if (settled.ok) {
      if (!this.ended()) return this.complete(settled.result);
      // Stopped (a signal, the deadline) as the last bytes went in: the report says it did not
      // complete, so the disk must not stay looking as if it had.
      return this.removePartialTarget(request.target, before);
    }
    this.removePartialTarget(request.target, before);
    if (this.ended()) return;
    this.log.error({ error: oneLine(settled.error) }, 'Error during resumed processing');
    this.end({ kind: 'failed', error: settled.error });
  }

  /** What a killed earlier attempt left on the pod's volumes must not fill or block this upload. */
  private async emptyVolumes(signal: AbortSignal): Promise<void> {
    for (const dir of this.config.volumesToEmpty) await emptyVolume(dir, this.log, signal);
  }

  private complete(result: ImportResult): void {
    this.current = undefined;
    this.log.info(
      { destination: this.config.destination, formats: result.formats, virtualSize: result.virtualSize, targetSize: result.targetSize },
      'Wrote data to destination',
    );
    this.end({ kind: 'complete', result });
  }

  private importRequest(route: UploadRoute, source: ReturnType<typeof uploadBody>['source']): ImportRequest {
    const config = this.config;
    let target: TargetSpec;
    // Block wins over archive, so the pipeline reports "ContentType Archive cannot have block volumeMode".
    if (config.blockMode) target = { kind: 'block', path: config.destination };
    else if (route.archive) target = { kind: 'directory', path: path.dirname(config.destination) };
    // CDI writes the volume's disk.img in place: the volume has no room for a second copy.
    else target = { kind: 'file', path: config.destination, atomic: false };
    const request: ImportRequest = {
      source: { kind: 'custom', source },
      contentType: route.archive ? 'archive' : 'kubevirt',
      target,
      filesystemOverhead: config.filesystemOverhead,
      preallocation: config.preallocation,
    };
    if (config.imageSize !== undefined) request.requestedSize = config.imageSize;
    if (config.checksum) request.checksum = config.checksum;
    if (config.scratchDir) request.scratchDir = config.scratchDir;
    return request;
  }

  /**
   * What a failed upload leaves must not look like a disk: CDI would hand it to the VM. A file
   * that was there before and that the upload never touched (refused before writing: too large, a
   * bad form) is not the upload's to remove (a DESTINATION outside a pod; a pod's is emptied first).
   */
  private removePartialTarget(target: TargetSpec, before: string | undefined): void {
    if (target.kind !== 'file') return;
    try {
      if (before !== undefined && fileIdentity(target) === before) return;
      if (statSync(target.path).isFile()) rmSync(target.path, { force: true });
    } catch {
      // nothing there
    }
  }

  private reply(req: IncomingMessage, res: ServerResponse, status: number, message?: string): void {
    if (res.headersSent || res.destroyed) return;
    res.statusCode = status;
    if (message !== undefined) {
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end(`${message}\n`);
    } else {
      res.end();
    }
    // An answer before the whole body was read. Closing the connection now would reset it under
    // the client while it still sends, and the client could lose the answer; instead the rest is
    // read and dropped (a client like curl stops sending once it sees the answer), for a while.
    if (!req.complete) {
      req.resume();
      const limit = setTimeout(() => req.socket.destroy(), DISCARD_BODY_MS).unref();
      req.once('end', () => clearTimeout(limit));
      req.once('close', () => clearTimeout(limit));
    }
  }
}

/** A regular file's identity and state (inode, size, change time), to tell whether it was touched; undefined when absent. */
function fileIdentity(target: TargetSpec): string | undefined {
  if (target.kind !== 'file') return undefined;
  try {
    const info = statSync(target.path, { bigint: true });
    return info.isFile() ? `${info.dev}:${info.ino}:${info.size}:${info.ctimeNs}` : undefined;
  } catch {
    return undefined;
  }
}

function listen(server: http.Server | https.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(usageError(`cannot listen on ${host || '*'}:${port}: ${oneLine(err)}`));
    server.once('error', onError);
    server.listen(port, host || undefined, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
