/**
 * Range reads over plain HTTP/1.1 keep-alive sockets that receive the body straight into the
 * caller's buffer (net's `onread`): no socket chunks, no parser copy, no concatenation. Through
 * undici, a 4 MiB range costs ~65 socket chunks that are copied into llhttp's WebAssembly memory
 * and then concatenated, and the garbage collector pays for all of them; here the kernel writes
 * the bytes where they are going to stay.
 *
 * It handles only the answer a Range read expects: `206` with exactly the asked Content-Range and
 * a matching Content-Length. Other statuses are returned without a body (the socket is closed);
 * anything else (redirects, chunked or compressed bodies, odd framing) throws `UseGeneralPath`, and
 * the caller repeats the request through undici, which knows all of HTTP. `http:` and `https:`
 * (with the source's TLS settings) without a proxy; requests through proxies stay with undici.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { monotonicMs } from '../../util/monotonic-clock.js';
import { noteBodyBytes, StallError } from './http-errors.js';
import { ProgressWindow } from './stall-watch.js';
import type { TlsConnectOptions } from './tls-options.js';

/** node:tls, loaded for https only (with node:crypto, ~15 ms of a plain-http import's start). */
const tls = () => createRequire(import.meta.url)('node:tls') as typeof import('node:tls');

/** The request is not one this client answers; send it through the general (undici) path. */
export class UseGeneralPath extends Error {}

export interface DirectRangeAnswer {
  statusCode: number;
  contentRange?: string;
  /** The answer's header fields, lower-case names (a list when a name came more than once). */
  headers: IncomingHttpHeaders;
  /** The body, for a 206 with exactly the asked range; otherwise undefined (and nothing was read). */
  data?: Buffer;
  /** Milliseconds from the request leaving on a connected socket to the answer's head: about one round trip. */
  headWaitMs: number;
}

/** Head lines larger than this are not a Range answer we want to parse by hand. */
const MAX_HEAD_BYTES = 64 << 10;
const HEAD_BUFFER_BYTES = 16 << 10;
/** Idle keep-alive sockets kept per client. */
const MAX_IDLE = 16;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Field values: visible ASCII, spaces and tabs, obs-text; never CR, LF or NUL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** A keep-alive connection whose reads go into whatever buffer the current request gives. */
class Connection {
  readonly socket: net.Socket;
  /** Where the next read lands; switched by the request in progress. */
  target: Buffer;
  readonly headBuffer = Buffer.allocUnsafe(HEAD_BUFFER_BYTES);
  onRead: ((bytes: number, into: Buffer) => void) | undefined;
  /** Set when the socket can no longer be reused. */
  broken = false;
  /** Requests answered on this socket so far. */
  uses = 0;
  /** When the connection (and its TLS handshake) was up; undefined while connecting. */
  connectedAt: number | undefined;

  constructor(url: URL, tlsOptions: TlsConnectOptions | undefined, onIdleFailure: (conn: Connection) => void) {
    this.target = this.headBuffer;
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const common = {
      host,
      noDelay: true,
      onread: {
        buffer: () => this.target,
        callback: (bytes: number, into: Uint8Array) => {
          if (this.onRead) this.onRead(bytes, into as Buffer);
          else {
            // Bytes nobody asked for: the framing is off; never reuse this socket.
            this.broken = true;
            this.socket.destroy();
          }
          return true;
        },
      },
    };
    this.socket =
      url.protocol === 'https:'
        ? // SNI only for names, as undici does; the certificate is checked against the host either way.
          tls().connect({ ...common, ...tlsOptions, port: Number(url.port || 443), servername: net.isIP(host) ? undefined : host })
        : net.connect({ ...common, port: Number(url.port || 80) });
    this.socket.setNoDelay(true);
    this.socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => (this.connectedAt = monotonicMs()));
    const idleFailure = () => {
      this.broken = true;
      if (!this.onRead) onIdleFailure(this);
    };
    this.socket.on('error', idleFailure);
    this.socket.on('end', idleFailure);
    this.socket.on('close', idleFailure);
  }
}

export class DirectRangeClient {
  /** Idle keep-alive connections per origin. */
  private readonly idle = new Map<string, Connection[]>();
  private readonly active = new Set<Connection>();
  private closed = false;
  /** One abort listener per signal for all requests (a listener per request trips Node's leak warning). */
  private readonly watchers = new Map<AbortSignal, Set<() => void>>();

  /**
   * `tlsOptions`: the source's CAs and verification settings, for https URLs; asked for at the
   * first https connection (SourceDispatchers builds its TLS context then).
   */
  constructor(private readonly tlsOptions?: () => TlsConnectOptions) {}

  /** Whether requests to `url` (with these headers) can go this way. */
  static handles(url: URL, headers: Record<string, string>): boolean {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    return Object.entries(headers).every(([name, value]) => TOKEN.test(name) && FIELD_VALUE.test(value));
  }

  /** handles(), and no proxy on the way to `url` (requests through proxies stay with undici). */
  static suits(dispatchers: { proxyFor(url: URL): string | undefined }, url: URL, headers: Record<string, string>): boolean {
    return !dispatchers.proxyFor(url) && DirectRangeClient.handles(url, headers);
  }

  /**
   * GETs bytes `start`..`start + length - 1` of `url` into `into` (or a new buffer). Socket
   * failures reject with the socket's error (ECONNRESET, EPIPE…) or a `StallError` after
   * `stallMs` without a byte, noting the body bytes already received (`bodyBytesBefore`); a
   * keep-alive socket that the server had closed is retried once on a new one. The answer's head
   * may take `headMs` instead (a first request: the server may make the file on request).
   */
  async read(
    url: URL,
    headers: Record<string, string>,
    start: number,
    length: number,
    into: Buffer | undefined,
    stallMs: number,
    signal: AbortSignal,
    headMs = stallMs,
  ): Promise<DirectRangeAnswer> {
    // A Host header among the user's extra headers replaces the URL's, as with undici.
    const head = [`GET ${url.pathname}${url.search} HTTP/1.1`];
    if (!Object.keys(headers).some((name) => name.toLowerCase() === 'host')) head.push(`host: ${url.host}`);
    for (const [name, value] of Object.entries(headers)) head.push(`${name}: ${value}`);
    const request = `${head.join('\r\n')}\r\n\r\n`;
    const body = into ?? Buffer.allocUnsafe(length);
    for (;;) {
      const reused = this.idle.get(url.origin)?.pop();
      reused?.socket.ref();
      const conn = reused ?? this.connect(url);
      try {
        return await this.exchange(url.origin, conn, request, start, length, body, { headMs, stallMs }, signal);
      } catch (err) {
        // A reused socket the server closed while it was idle: the request never reached it.
        if (reused && err instanceof StaleConnection && !signal.aborted && !this.closed) continue;
        throw err instanceof StaleConnection ? err.cause : err;
      }
    }
  }

  /** Destroys every socket; requests in progress fail. */
  close(): void {
    this.closed = true;
    for (const conn of [...[...this.idle.values()].flat(), ...this.active]) conn.socket.destroy();
    this.idle.clear();
  }

  private connect(url: URL): Connection {
    if (this.closed) throw new Error('range client closed');
    const { origin } = url;
    const tlsOptions = url.protocol === 'https:' ? this.tlsOptions?.() : undefined;
    return new Connection(url, tlsOptions, (conn) => {
      const list = this.idle.get(origin) ?? [];
      const at = list.indexOf(conn);
      if (at >= 0) list.splice(at, 1);
      conn.socket.destroy();
    });
  }

  private park(origin: string, conn: Connection): boolean {
    const list = this.idle.get(origin) ?? [];
    if (list.length >= MAX_IDLE) return false;
    // An idle socket never keeps the process alive, even if nobody closes this client.
    conn.socket.unref();
    list.push(conn);
    this.idle.set(origin, list);
    return true;
  }

  /** Calls `handler` on abort; returns the function that stops watching. */
  private watch(signal: AbortSignal, handler: () => void): () => void {
    let handlers = this.watchers.get(signal);
    if (!handlers) {
      const all = new Set<() => void>();
      handlers = all;
      this.watchers.set(signal, all);
      signal.addEventListener('abort', () => [...all].forEach((h) => h()), { once: true });
    }
    handlers.add(handler);
    return () => handlers.delete(handler);
  }

  private exchange(
    origin: string,
    conn: Connection,
    request: string,
    start: number,
    length: number,
    body: Buffer,
    timeouts: { headMs: number; stallMs: number },
    signal: AbortSignal,
  ): Promise<DirectRangeAnswer> {
    const { socket } = conn;
    let silenceMs = timeouts.headMs;
    return new Promise<DirectRangeAnswer>((resolve, reject) => {
      let headBytes = 0;
      let extraHead: Buffer[] | undefined;
      let received = 0;
      let bodyAt = -1; // -1 while reading the head
      let keepAlive = true;
      let answer: DirectRangeAnswer | undefined;
      let done = false;
      let sentAt = 0;
      // The socket's timeout catches silence; a trickle (less than MIN_PROGRESS_BYTES in a whole
      // timeout) is caught here, as bytes arrive.
      const progress = new ProgressWindow(monotonicMs);
      const trickled = (bytes: number): boolean => {
        progress.received(bytes);
        const stall = progress.stalled(silenceMs);
        if (stall) finish(stall);
        return stall !== undefined;
      };

      const finish = (error: unknown, reuse = false) => {
        if (done) return;
        done = true;
        conn.onRead = undefined;
        conn.target = conn.headBuffer;
        socket.setTimeout(0);
        socket.off('timeout', onTimeout);
        socket.off('error', onError);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        unwatch();
        this.active.delete(conn);
        if (error !== undefined) {
          conn.broken = true;
          socket.destroy();
          // Body bytes already in place need not be asked for again.
          reject(bodyAt >= 0 ? noteBodyBytes(error, received) : error);
          return;
        }
        conn.uses++;
        if (!(reuse && keepAlive && !conn.broken && !this.closed && this.park(origin, conn))) socket.destroy();
        resolve(answer!);
      };
      const failure = (error: Error) => {
        // Nothing came back on a socket that served requests before: it was closed while idle.
        finish(headBytes === 0 && conn.uses > 0 ? new StaleConnection(error) : error);
      };
      const onError = (err: Error) => failure(err);
      const onEnd = () => {
        const err = Object.assign(new Error(`the server closed the connection after ${Math.max(received, 0)} of ${length} bytes`), { code: 'ECONNRESET' });
        failure(err);
      };
      const onTimeout = () => finish(new StallError(silenceMs / 1000));
      const onAbort = () => finish(signal.reason ?? new Error('aborted'));

      const startBody = (headEnd: number, headText: string, spill: Buffer) => {
        const headWaitMs = monotonicMs() - Math.max(sentAt, conn.connectedAt ?? sentAt);
        const lines = headText.split('\r\n');
        const status = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0] ?? '');
        if (!status) return finish(new UseGeneralPath('not an HTTP/1.x answer'));
        const statusCode = Number(status[2]);
        const fields = new Map<string, string[]>();
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          // Folded (continued) lines and lines without a name are for a real parser.
          if (colon <= 0 || line[0] === ' ' || line[0] === '\t') return finish(new UseGeneralPath('malformed header line'));
          const name = line.slice(0, colon).trim().toLowerCase();
          const list = fields.get(name) ?? [];
          list.push(line.slice(colon + 1).trim());
          fields.set(name, list);
        }
        const one = (name: string) => fields.get(name)?.[0];
        const connection = (fields.get('connection') ?? []).join(',').toLowerCase();
        keepAlive = status[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
        const contentRange = one('content-range');
        const headers: IncomingHttpHeaders = {};
        for (const [name, values] of fields) headers[name] = values.length === 1 ? values[0] : values;
        // Informational answers (103 Early Hints) come before the real one; redirects are followed.
        if (statusCode < 200 || (statusCode >= 300 && statusCode < 400)) return finish(new UseGeneralPath(`status ${statusCode}`));
        if (statusCode !== 206) {
          answer = { statusCode, contentRange, headers, headWaitMs };
          return finish(undefined); // the body is not read: the socket is not reused
        }
        const range = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(contentRange ?? '');
        if (!range || Number(range[1]) !== start || Number(range[2]) !== start + length - 1) {
          // Fewer bytes than asked (RFC 9110 allows it) are read by the general path, which keeps them.
          if (range && Number(range[1]) === start && Number(range[2]) < start + length - 1) return finish(new UseGeneralPath('a shorter range than asked'));
          answer = { statusCode, contentRange, headers, headWaitMs };
          return finish(undefined);
        }
        const lengths = fields.get('content-length') ?? [];
        const encoding = one('content-encoding');
        if (
          fields.has('transfer-encoding') ||
          lengths.length !== 1 ||
          lengths[0] !== String(length) ||
          (encoding !== undefined && encoding.toLowerCase() !== 'identity')
        ) {
          return finish(new UseGeneralPath('unexpected body framing'));
        }
        answer = { statusCode, contentRange, headers, data: body, headWaitMs };
        const early = spill.length - headEnd;
        if (early > length) return finish(new Error(`the server sent more than the ${length} bytes asked for`));
        spill.copy(body, 0, headEnd);
        bodyAt = early;
        received = early;
        if (received === length) return finish(undefined, true);
        // The answer is here: from now on a silence is a stall, however long the head could take.
        if (silenceMs !== timeouts.stallMs) socket.setTimeout((silenceMs = timeouts.stallMs));
        progress.close();
        progress.open();
        conn.target = body.subarray(received, length);
      };

      conn.onRead = (bytes, into) => {
        if (bodyAt >= 0) {
          received += bytes;
          if (received === length) finish(undefined, true);
          else if (trickled(bytes)) return;
          else conn.target = body.subarray(received, length);
          return;
        }
        // The head: gather until the blank line. It lands in headBuffer, contiguously, until
        // that is full; then it is collected piece by piece (a head that large is rare).
        if (trickled(bytes)) return;
        headBytes += bytes;
        let view: Buffer;
        if (!extraHead) {
          view = conn.headBuffer.subarray(0, headBytes);
          if (headBytes < HEAD_BUFFER_BYTES) conn.target = conn.headBuffer.subarray(headBytes);
          else {
            extraHead = [Buffer.from(view)];
            conn.target = conn.headBuffer;
          }
        } else {
          extraHead.push(Buffer.from(into.subarray(0, bytes)));
          view = Buffer.concat(extraHead);
        }
        const end = view.indexOf('\r\n\r\n');
        if (end < 0) {
          if (headBytes > MAX_HEAD_BYTES) finish(new UseGeneralPath('answer head too large'));
          return;
        }
        // The head views the shared buffer: take its text before the body overwrites anything.
        startBody(end + 4, view.toString('latin1', 0, end), view);
      };

      let unwatch = () => {};
      if (signal.aborted) return onAbort();
      this.active.add(conn);
      unwatch = this.watch(signal, onAbort);
      socket.on('error', onError);
      socket.on('end', onEnd);
      socket.on('close', onEnd);
      socket.on('timeout', onTimeout);
      socket.setTimeout(silenceMs);
      if (socket.destroyed || conn.broken) return failure(Object.assign(new Error('socket closed'), { code: 'ECONNRESET' }));
      sentAt = monotonicMs();
      progress.open();
      socket.write(request, 'latin1');
    });
  }
}

class StaleConnection extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
  }
}
