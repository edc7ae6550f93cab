/**
 * A Node HTTP server that serves one byte buffer with injected faults, for the HTTP source's
 * reliability tests. It listens on two ports (two origins) so redirects can cross origins.
 *
 *   GET /ok                      200 with Content-Length, ETag, Last-Modified, Accept-Ranges; honours Range/If-Range
 *   GET /drop?after=N&times=K    like /ok, but the first K requests are cut after N body bytes
 *   GET /stall?after=N&times=K   like /ok, but the first K requests stop sending after N bytes (connection kept open)
 *                                ("first K requests" of drop/stall/no-range-drop/changes: those whose body is longer
 *                                than N, so a small Range probe before the download is not one of them)
 *   GET /wrong-length?extra=M    claims M bytes more than it has, sends what it has, then closes
 *   GET /no-range-drop?after=N&times=K   no Range support, no validators; the first K (default 1) requests are cut after N bytes
 *   GET /trickle?bytes=B&every=MS  like /ok, but the body goes out B bytes every MS ms (slow and steady, never stalled)
 *   GET /encoded?as=deflate      the body deflated, with Content-Encoding (sent though not asked for)
 *   GET /busy?times=K&after=S    503 with Retry-After: S for the first K requests, then like /ok
 *   GET /ignores-range           200 with the whole file whatever Range asks, though it says Accept-Ranges: bytes
 *   GET /ignores-range-every?every=K&from=F  like /ok, but every K-th request (from the F-th on, 0-based) gets 200 with
 *                                the whole file (the same file) whatever Range asks
 *   GET /partial-range?every=K   like /ok, but every K-th Range request is answered with its first half only (a valid 206)
 *   GET /short-body?every=K      like /ok, but every K-th Range request gets its whole Content-Range and a Content-Length
 *                                and body of half of it (connection kept open)
 *   GET /stall-tail              like /ok, but a Range request within the last 128 KiB gets its headers and then nothing
 *   GET /flaky?times=K           500 for the first K requests, then like /ok
 *   GET /slow-answer?ms=N&times=K  the first K requests (default 1) are answered only after N ms, then like /ok
 *   GET /unknown-total?bytes=N   the first N bytes as the file; Range answered 206 with `Content-Range: bytes S-E/*`
 *                                (allowed: the total is unknown); no Range: 200
 *   GET /no-head                 like /ok, HEAD answers 405
 *   GET /webrick                 like /ok, but a Range request whose If-Range matches gets 304 Not Modified (Ruby's WEBrick)
 *   GET /redirect-utf8           302 → /named?file=é with the UTF-8 bytes unencoded in Location; /named serves /ok only for that name
 *   GET /big-headers             like /ok without Range support, with 24 KiB of response headers (large policy headers)
 *   GET /webfs                   like /ok, but a Range that reaches past the end of the file gets 400 Bad Request (webfs)
 *   GET /hop1                    302 → /hop2 → 302 → /ok (same origin)
 *   GET /cross-origin            302 → the other port's /ok
 *   GET /redirect?to=URL         302 → URL
 *   GET /changes?after=N         the first request is cut after N bytes; after that cut, other bytes with another ETag
 *   GET /replaced?after=N        like /changes, but Range is served whatever If-Range says (as some gateways do)
 *   GET /replaced-from?request=K from the K-th request on (1-based), other bytes with another ETag; If-Range ignored
 *   GET /restart?after=N&down=MS the first request long enough is cut after N bytes, and the first origin then refuses
 *                                connections for MS ms (a server restarting), then serves as /ok
 *   GET /status/N                answers status N
 *
 * `requests` records every request (both ports) with the headers that matter to the tests.
 */
import http from 'node:http';
import zlib from 'node:zlib';
import type { AddressInfo } from 'node:net';

export interface FaultRequest {
  port: number;
  method: string;
  path: string;
  range?: string;
  ifRange?: string;
  authorization?: string;
  /** The `x-test` header, the tests' extra header. */
  xTest?: string;
  acceptEncoding?: string;
  userAgent?: string;
}

export interface FaultServer {
  /** Base URL of the first origin, ending in '/'. */
  url: string;
  /** Base URL of the second origin. */
  otherUrl: string;
  requests: FaultRequest[];
  /** The most requests that were being answered at once, so far. */
  maxConcurrent(): number;
  etag: string;
  stop(): Promise<void>;
}

const LAST_MODIFIED = new Date(Date.UTC(2025, 0, 1)).toUTCString();
const CHANGED_LAST_MODIFIED = new Date(Date.UTC(2025, 0, 2)).toUTCString();

export async function startFaultServer(original: Buffer): Promise<FaultServer> {
  const requests: FaultRequest[] = [];
  const counts = new Map<string, number>();
  const faults = new Map<string, number>();
  const originalEtag = `"${original.length.toString(16)}-test"`;
  const changedContent = Buffer.from(original).reverse();
  const changedEtag = `"${original.length.toString(16)}-changed"`;
  const replicaEtag = `"${original.length.toString(16)}-replica-b"`;
  let otherPort = 0;
  let restartFirst: (downMs: number) => void = () => {};
  let concurrent = 0;
  let maxConcurrent = 0;

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    maxConcurrent = Math.max(maxConcurrent, ++concurrent);
    res.once('close', () => concurrent--);
    const url = new URL(req.url ?? '/', 'http://x');
    const port = (req.socket.localPort ?? 0) as number;
    const header = (name: string) => req.headers[name] as string | undefined;
    requests.push({
      port,
      method: req.method ?? '',
      path: url.pathname,
      range: header('range'),
      ifRange: header('if-range'),
      authorization: header('authorization'),
      xTest: header('x-test'),
      acceptEncoding: header('accept-encoding'),
      userAgent: header('user-agent'),
    });
    const key = `${port}${url.pathname}${url.search}`; // each query string counts its own "first K requests"
    const seen = counts.get(key) ?? 0;
    counts.set(key, seen + 1);
    // Drops and stalls count only requests long enough to reach the fault point, so a small
    // Range probe before the download does not use up "the first K requests".
    const faulted = faults.get(key) ?? 0;
    const fault = (after: number, times: number) => (body: Buffer) => {
      if (faulted >= times || body.length <= after) return undefined;
      faults.set(key, faulted + 1);
      return after;
    };
    const num = (name: string, fallback: number) => Number(url.searchParams.get(name) ?? fallback);

    type Fault = (body: Buffer) => number | undefined;
    const serve = (opts: {
      ranges: boolean;
      cut?: Fault;
      stall?: Fault;
      extraLength?: number;
      changed?: boolean;
      /** The same file, with the validators of another replica behind a load balancer. */
      otherReplica?: boolean;
      ignoreIfRange?: boolean;
      ifRangeNotModified?: boolean;
      rangePastEnd400?: boolean;
      trickle?: { bytes: number; everyMs: number };
      /** This request's Range: whole file (200), the first half only (206), or a body half the range's length. */
      rangeFault?: 'ignore' | 'first-half' | 'short-body';
    }) => {
      const content = opts.changed ? changedContent : original;
      const etag = opts.changed ? changedEtag : opts.otherReplica ? replicaEtag : originalEtag;
      const lastModified = opts.changed || opts.otherReplica ? CHANGED_LAST_MODIFIED : LAST_MODIFIED;
      if (req.method === 'HEAD' && url.pathname === '/no-head') return void res.writeHead(405).end();
      let start = 0;
      let end = content.length - 1;
      let status = 200;
      const headers: http.OutgoingHttpHeaders = {};
      if (opts.ranges) {
        headers['accept-ranges'] = 'bytes';
        headers.etag = etag;
        headers['last-modified'] = lastModified;
        const range = /^bytes=(\d+)-(\d*)$/.exec(header('range') ?? '');
        const ifRange = header('if-range');
        if (range && ifRange && opts.ifRangeNotModified && (ifRange === etag || ifRange === lastModified)) {
          res.writeHead(304, { etag, 'last-modified': lastModified }).end();
          return;
        }
        if (range && opts.rangePastEnd400 && range[2] && Number(range[2]) >= content.length) {
          res.writeHead(400, { 'content-length': 0 }).end();
          return;
        }
        if (range && opts.rangeFault !== 'ignore' && (!ifRange || opts.ignoreIfRange || ifRange === etag || ifRange === lastModified)) {
          start = Number(range[1]);
          end = range[2] ? Math.min(Number(range[2]), content.length - 1) : content.length - 1;
          if (opts.rangeFault === 'first-half' && end > start) end = start + Math.floor((end - start + 1) / 2) - 1;
          if (start >= content.length) {
            res.writeHead(416, { 'content-range': `bytes */${content.length}` }).end();
            return;
          }
          status = 206;
          headers['content-range'] = `bytes ${start}-${end}/${content.length}`;
        }
      }
      let body = content.subarray(start, end + 1);
      if (opts.rangeFault === 'short-body' && status === 206) body = body.subarray(0, Math.floor(body.length / 2));
      headers['content-length'] = body.length + (opts.extraLength ?? 0);
      res.writeHead(status, headers);
      if (req.method === 'HEAD') return void res.end();
      const cutAfter = opts.cut?.(body);
      const stallAfter = opts.stall?.(body);
      if (cutAfter !== undefined) {
        res.write(body.subarray(0, cutAfter), () => res.socket?.destroy());
      } else if (stallAfter !== undefined) {
        res.write(body.subarray(0, stallAfter)); // and nothing more: the client must give up
      } else if (opts.trickle) {
        const { bytes, everyMs } = opts.trickle;
        res.flushHeaders(); // the head now, as servers send it, not with the first slow piece
        let sent = 0;
        const timer = setInterval(() => {
          if (res.destroyed) return clearInterval(timer);
          const piece = body.subarray(sent, sent + bytes);
          sent += piece.length;
          if (sent >= body.length) {
            clearInterval(timer);
            res.end(piece);
          } else res.write(piece);
        }, everyMs);
      } else if (opts.extraLength) {
        res.write(body, () => res.socket?.destroy());
      } else {
        res.end(body);
      }
    };

    switch (url.pathname) {
      case '/ok':
      case '/no-head':
        return serve({ ranges: true });
      case '/webrick':
        return serve({ ranges: true, ifRangeNotModified: true });
      case '/redirect-utf8':
        return void res.writeHead(302, { location: Buffer.from('/named?file=é').toString('latin1') }).end();
      case '/named':
        if (url.searchParams.get('file') !== 'é') return void res.writeHead(404).end();
        return serve({ ranges: true });
      case '/big-headers':
        for (let i = 0; i < 6; i++) res.setHeader(`x-policy-${i}`, 'p'.repeat(4000));
        return serve({ ranges: false });
      case '/webfs':
        return serve({ ranges: true, rangePastEnd400: true });
      case '/drop':
        return serve({ ranges: true, cut: fault(num('after', 1000), num('times', 1)) });
      case '/restart': {
        const cut = fault(num('after', 1000), 1);
        return serve({
          ranges: true,
          cut: (body) => {
            const at = cut(body);
            if (at !== undefined) setImmediate(() => restartFirst(num('down', 500)));
            return at;
          },
        });
      }
      case '/stall':
        return serve({ ranges: true, stall: fault(num('after', 1000), num('times', 1)) });
      case '/wrong-length':
        return serve({ ranges: true, extraLength: num('extra', 1000) });
      case '/no-range-drop':
        return serve({ ranges: false, cut: fault(num('after', 1000), num('times', 1)) });
      case '/changes':
        return serve({ ranges: true, cut: fault(num('after', 1000), 1), changed: faulted >= 1 });
      case '/replaced':
        return serve({ ranges: true, cut: fault(num('after', 1000), 1), changed: faulted >= 1, ignoreIfRange: true });
      case '/replicas': // two replicas that take turns answering, each with its own ETag and Last-Modified
        return serve({ ranges: true, otherReplica: seen % 2 === 1 });
      case '/replaced-from':
        return serve({ ranges: true, changed: seen + 1 >= num('request', 2), ignoreIfRange: true });
      case '/trickle':
        return serve({ ranges: true, trickle: { bytes: num('bytes', 65536), everyMs: num('every', 50) } });
      case '/encoded': {
        const encoded = zlib.deflateSync(original);
        return void res.writeHead(200, { 'content-encoding': url.searchParams.get('as') ?? 'deflate', 'content-length': encoded.length }).end(encoded);
      }
      case '/busy':
        if (seen < num('times', 1)) return void res.writeHead(503, { 'retry-after': String(num('after', 1)) }).end('busy');
        return serve({ ranges: true });
      case '/ignores-range-every':
      case '/partial-range':
      case '/short-body': {
        const every = num('every', 3);
        const rangeFaults = { '/ignores-range-every': 'ignore', '/partial-range': 'first-half', '/short-body': 'short-body' } as const;
        const hit = header('range') !== undefined && seen >= num('from', 0) && seen % every === every - 1;
        return serve({ ranges: true, rangeFault: hit ? rangeFaults[url.pathname] : undefined });
      }
      case '/ignores-range':
        return void res.writeHead(200, { 'accept-ranges': 'bytes', 'content-length': original.length, etag: originalEtag }).end(original);
      case '/stall-tail': {
        const range = /^bytes=(\d+)-/.exec(header('range') ?? '');
        if (range && Number(range[1]) >= original.length - 131072 && Number(range[1]) > 0) {
          return void res.writeHead(206, { 'content-range': `bytes ${range[1]}-${original.length - 1}/${original.length}`, 'content-length': original.length - Number(range[1]) }).flushHeaders();
        }
        return serve({ ranges: true });
      }
      case '/slow-answer':
        if (seen < num('times', 1)) return void setTimeout(() => serve({ ranges: true }), num('ms', 1000));
        return serve({ ranges: true });
      case '/unknown-total': {
        const file = original.subarray(0, num('bytes', original.length));
        const range = /^bytes=(\d+)-(\d+)$/.exec(header('range') ?? '');
        if (!range) return void res.writeHead(200, { 'content-length': file.length }).end(file);
        const end = Math.min(Number(range[2]), file.length - 1);
        const part = file.subarray(Number(range[1]), end + 1);
        return void res.writeHead(206, { 'content-range': `bytes ${range[1]}-${end}/*`, 'content-length': part.length }).end(part);
      }
      case '/flaky':
        if (seen < num('times', 2)) return void res.writeHead(500).end('try again');
        return serve({ ranges: true });
      case '/hop1':
        return void res.writeHead(302, { location: '/hop2' }).end();
      case '/hop2':
        return void res.writeHead(302, { location: '/ok' }).end();
      case '/redirect':
        return void res.writeHead(302, { location: url.searchParams.get('to') ?? '/ok' }).end();
      case '/cross-origin':
        return void res.writeHead(302, { location: `http://127.0.0.1:${otherPort}/ok` }).end();
      default: {
        const status = /^\/status\/(\d{3})$/.exec(url.pathname);
        if (status) return void res.writeHead(Number(status[1])).end();
        res.writeHead(404).end();
      }
    }
  };

  const listen = async () => {
    const server = http.createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return server;
  };
  const first = await listen();
  const second = await listen();
  const portOf = (s: http.Server) => (s.address() as AddressInfo).port;
  const firstPort = portOf(first);
  restartFirst = (downMs) => {
    first.close();
    first.closeAllConnections();
    setTimeout(() => first.listen(firstPort, '127.0.0.1'), downMs);
  };
  otherPort = portOf(second);
  return {
    url: `http://127.0.0.1:${portOf(first)}/`,
    otherUrl: `http://127.0.0.1:${otherPort}/`,
    requests,
    maxConcurrent: () => maxConcurrent,
    etag: originalEtag,
    stop: async () => {
      for (const server of [first, second]) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  };
}
