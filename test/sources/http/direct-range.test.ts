/**
 * The direct Range client (plain HTTP/1.1 keep-alive sockets reading into the caller's buffer):
 * exact bytes, connection reuse, the answers it leaves to undici, and every failure it must
 * turn into a retryable error. Servers here are raw `net` servers, so each test controls the
 * bytes on the wire (framing, closes, stalls) exactly.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { ImportError } from '../../../src/errors.js';
import { DirectRangeClient, UseGeneralPath } from '../../../src/sources/http/direct-range-client.js';
import { isRetryableTransportError } from '../../../src/sources/http/http-errors.js';
import { HttpSource } from '../../../src/sources/http/index.js';
import { tsxLoader } from '../../support/cli.js';
import { digestStream, quickTuning, randomContent, sha256 } from './helpers.js';

const content = randomContent(6 * 1024 * 1024 + 4321);
const ETAG = '"direct-test"';

type Mode =
  | 'ok' // 206 with Content-Length, keep-alive
  | 'close-after' // like ok, then closes the connection once the answer is sent
  | 'drop' // 206 head and half the body, then a close (except for ranges from 0)
  | 'drop-once' // like drop for the first such request to this server, then like ok
  | 'stall' // 206 head and half the body, then silence (except for ranges from 0)
  | 'chunked' // 206 with Transfer-Encoding: chunked (except for ranges from 0)
  | 'wrong-range' // 206 whose Content-Range is off by one (except for ranges from 0)
  | 'big-head' // 206 with 40 KiB of extra header lines
  | 'status-503' // 503
  | 'redirect' // 302 to /ok on the same server
  | 'early-hints' // 103 Early Hints, then like ok
  | 'trickle'; // 206 head and body written a few bytes at a time

interface RawServer {
  url: string;
  /** Connections accepted so far. */
  connections: () => number;
  /** Request lines and headers received, one entry per request. */
  requests: { path: string; range?: string; ifRange?: string; authorization?: string; host?: string[] }[];
  stop(): Promise<void>;
}

async function startRawServer(): Promise<RawServer> {
  let connections = 0;
  const requests: RawServer['requests'] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = pending.subarray(0, end).toString('latin1').split('\r\n');
        pending = pending.subarray(end + 4);
        const path = head[0]!.split(' ')[1]!;
        const field = (name: string) => head.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
        const hosts = head.filter((l) => l.toLowerCase().startsWith('host:')).map((l) => l.slice(5).trim());
        requests.push({ path, range: field('range'), ifRange: field('if-range'), authorization: field('authorization'), host: hosts });
        answer(socket, path.slice(1) as Mode, field('range'));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    connections: () => connections,
    requests,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let droppedOnce = 0;

function answer(socket: net.Socket, mode: Mode, rangeHeader: string | undefined): void {
  const range = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader ?? '');
  if (mode === 'status-503') return void socket.write('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n');
  if (mode === 'redirect') return void socket.write('HTTP/1.1 302 Found\r\nlocation: /ok\r\ncontent-length: 0\r\n\r\n');
  if (mode === 'early-hints') socket.write('HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n');
  if (!range) {
    // The whole file, as a plain GET would get it.
    socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${content.length}\r\netag: ${ETAG}\r\naccept-ranges: bytes\r\n\r\n`);
    return void socket.write(content);
  }
  const start = Number(range[1]);
  const end = Math.min(Number(range[2]), content.length - 1);
  // The source's first request (a probe of the first bytes) is always answered well.
  if (start === 0 && ['chunked', 'wrong-range', 'drop', 'drop-once', 'stall'].includes(mode)) mode = 'ok';
  if (mode === 'drop-once') mode = droppedOnce++ === 0 ? 'drop' : 'ok';
  const body = content.subarray(start, end + 1);
  const shownStart = mode === 'wrong-range' ? start + 1 : start;
  const lines = [
    'HTTP/1.1 206 Partial Content',
    `content-range: bytes ${shownStart}-${end}/${content.length}`,
    `etag: ${ETAG}`,
    'accept-ranges: bytes',
    mode === 'chunked' ? 'transfer-encoding: chunked' : `content-length: ${body.length}`,
  ];
  if (mode === 'big-head') for (let i = 0; i < 400; i++) lines.push(`x-filler-${i}: ${'f'.repeat(90)}`);
  const head = `${lines.join('\r\n')}\r\n\r\n`;
  switch (mode) {
    case 'chunked':
      socket.write(head);
      socket.write(`${body.length.toString(16)}\r\n`);
      socket.write(body);
      return void socket.write('\r\n0\r\n\r\n');
    case 'drop':
      socket.write(head);
      return void socket.write(body.subarray(0, body.length >> 1), () => socket.destroy());
    case 'stall':
      socket.write(head);
      return void socket.write(body.subarray(0, body.length >> 1));
    case 'close-after':
      socket.write(head);
      return void socket.end(body);
    case 'trickle': {
      const whole = Buffer.concat([Buffer.from(head, 'latin1'), body]);
      let at = 0;
      const step = () => {
        if (at >= whole.length || socket.destroyed) return;
        const size = at < 200 ? 7 : 50_000;
        socket.write(whole.subarray(at, at + size), () => setImmediate(step));
        at += size;
      };
      return step();
    }
    default:
      socket.write(head);
      socket.write(body);
  }
}

let server: RawServer;
before(async () => {
  server = await startRawServer();
});
after(async () => {
  await server.stop();
});

const signal = () => new AbortController().signal;
const url = (mode: Mode) => new URL(`${server.url}${mode}`);
const ranged = (start: number, length: number) => ({ range: `bytes=${start}-${start + length - 1}`, 'if-range': ETAG });

describe('DirectRangeClient', () => {
  it('reads exact bytes into the given buffer and reuses one keep-alive connection', async () => {
    const client = new DirectRangeClient();
    const before = server.connections();
    const into = Buffer.alloc(4 << 20);
    for (const [start, length] of [[0, 100], [123_456, 4 << 20], [content.length - 1000, 1000], [5, 1]] as const) {
      const answer = await client.read(url('ok'), ranged(start, length), start, length, into.subarray(0, length), 5000, signal());
      assert.equal(answer.statusCode, 206);
      assert.equal(answer.data!.buffer, into.buffer, 'the body is read into the given buffer');
      assert.equal(sha256(answer.data!), sha256(content.subarray(start, start + length)));
    }
    assert.equal(server.connections() - before, 1);
    client.close();
  });

  it('runs concurrent reads on parallel connections and gets every byte right', async () => {
    const client = new DirectRangeClient();
    const size = 1 << 20;
    const reads = Array.from({ length: 6 }, (_, i) => client.read(url('ok'), ranged(i * size, size), i * size, size, undefined, 5000, signal()));
    const answers = await Promise.all(reads);
    answers.forEach((answer, i) => assert.equal(sha256(answer.data!), sha256(content.subarray(i * size, (i + 1) * size))));
    client.close();
  });

  it('parses heads that arrive a few bytes at a time, and heads larger than its head buffer', async () => {
    const client = new DirectRangeClient();
    for (const mode of ['trickle', 'big-head'] as const) {
      const answer = await client.read(url(mode), ranged(1000, 300_000), 1000, 300_000, undefined, 5000, signal());
      assert.equal(sha256(answer.data!), sha256(content.subarray(1000, 301_000)), mode);
    }
    client.close();
  });

  it('opens a new connection when the server closed the idle one', async () => {
    const client = new DirectRangeClient();
    const before = server.connections();
    await client.read(url('close-after'), ranged(0, 1000), 0, 1000, undefined, 5000, signal());
    await new Promise((resolve) => setTimeout(resolve, 50));
    const answer = await client.read(url('ok'), ranged(2000, 1000), 2000, 1000, undefined, 5000, signal());
    assert.equal(sha256(answer.data!), sha256(content.subarray(2000, 3000)));
    assert.equal(server.connections() - before, 2);
    client.close();
  });

  it('fails a dropped body with a retryable error', async () => {
    const client = new DirectRangeClient();
    await assert.rejects(client.read(url('drop'), ranged(10, 100_000), 10, 100_000, undefined, 5000, signal()), (err: Error) => {
      assert.ok(isRetryableTransportError(err), String(err));
      assert.match(err.message, /closed the connection after \d+ of 100000 bytes/);
      return true;
    });
    client.close();
  });

  it('fails a stalled body with a retryable stall error', async () => {
    const client = new DirectRangeClient();
    await assert.rejects(client.read(url('stall'), ranged(10, 100_000), 10, 100_000, undefined, 200, signal()), (err: Error) => {
      assert.ok(isRetryableTransportError(err), String(err));
      assert.match(err.message, /no data received for 0\.2 s/);
      return true;
    });
    client.close();
  });

  it('stops when the signal aborts', async () => {
    const client = new DirectRangeClient();
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('cancelled by test')), 50);
    await assert.rejects(client.read(url('stall'), ranged(10, 100_000), 10, 100_000, undefined, 5000, controller.signal), /cancelled by test/);
    client.close();
  });

  it('returns other statuses and wrong ranges without a body, and leaves redirects and chunked bodies to undici', async () => {
    const client = new DirectRangeClient();
    const unavailable = await client.read(url('status-503'), ranged(0, 10), 0, 10, undefined, 5000, signal());
    const { headWaitMs, ...answer } = unavailable;
    assert.deepEqual(answer, { statusCode: 503, contentRange: undefined, headers: { 'content-length': '0' } });
    assert.ok(headWaitMs >= 0 && headWaitMs < 5000, `${headWaitMs} ms`);
    const wrong = await client.read(url('wrong-range'), ranged(10, 10), 10, 10, undefined, 5000, signal());
    assert.equal(wrong.data, undefined);
    assert.equal(wrong.contentRange, `bytes 11-19/${content.length}`);
    await assert.rejects(client.read(url('redirect'), ranged(0, 10), 0, 10, undefined, 5000, signal()), UseGeneralPath);
    await assert.rejects(client.read(url('early-hints'), ranged(0, 10), 0, 10, undefined, 5000, signal()), UseGeneralPath);
    await assert.rejects(client.read(url('chunked'), ranged(10, 10), 10, 10, undefined, 5000, signal()), UseGeneralPath);
    client.close();
  });

  it('never keeps the process alive with an idle keep-alive socket', async () => {
    const module = new URL('../../../src/sources/http/direct-range-client.ts', import.meta.url).href;
    const script = [
      `import { DirectRangeClient } from ${JSON.stringify(module)};`,
      'const client = new DirectRangeClient();',
      `const answer = await client.read(new URL(${JSON.stringify(url('ok').href)}), { range: 'bytes=0-9' }, 0, 10, undefined, 5000, new AbortController().signal);`,
      'console.log(answer.data.length);',
    ].join('\n');
    const started = Date.now();
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', tsxLoader, '--input-type=module', '-e', script], { timeout: 20_000 });
    assert.equal(stdout.trim(), '10');
    assert.ok(Date.now() - started < 10_000);
  });

  it('sends one Host header: the URL\'s, or the one among the extra headers', async () => {
    const client = new DirectRangeClient();
    const before = server.requests.length;
    await client.read(url('ok'), ranged(0, 10), 0, 10, undefined, 5000, signal());
    await client.read(url('ok'), { host: 'disks.example', ...ranged(0, 10) }, 0, 10, undefined, 5000, signal());
    assert.deepEqual(
      server.requests.slice(before).map((r) => r.host),
      [[new URL(server.url).host], ['disks.example']],
    );
    client.close();
  });

  it('takes http and https URLs and clean header values', () => {
    assert.equal(DirectRangeClient.handles(new URL('http://h/x'), { 'x-a': 'b' }), true);
    assert.equal(DirectRangeClient.handles(new URL('https://h/x'), {}), true);
    assert.equal(DirectRangeClient.handles(new URL('ftp://h/x'), {}), false);
    assert.equal(DirectRangeClient.handles(new URL('http://h/x'), { 'x-a': 'b\r\nx-evil: 1' }), false);
  });
});

describe('HttpSource random access through the direct client', () => {
  async function open(mode: Mode, transport = {}) {
    const opened = await new HttpSource(`${server.url}${mode}`, transport, quickTuning).open(signal());
    opened.stream.destroy();
    return opened.randomAccess!;
  }

  it('sends credentials, If-Range and exact ranges, and returns the bytes', async () => {
    const reader = await open('ok', { auth: { username: 'u', password: 'p' } });
    const before = server.requests.length;
    const data = await reader.read(1_000_000, 2 << 20);
    assert.equal(sha256(data), sha256(content.subarray(1_000_000, 1_000_000 + (2 << 20))));
    const mine = server.requests.slice(before);
    assert.equal(mine.length, 1);
    assert.deepEqual(mine[0], {
      path: '/ok',
      range: `bytes=1000000-${1_000_000 + (2 << 20) - 1}`,
      ifRange: ETAG,
      authorization: `Basic ${Buffer.from('u:p').toString('base64')}`,
      host: [new URL(server.url).host],
    });
    await reader.close();
  });

  it('probes and reads by Range without loading undici', async () => {
    const module = new URL('../../../src/sources/http/index.ts', import.meta.url).href;
    const script = [
      "import { createRequire } from 'node:module';",
      `import { HttpSource } from ${JSON.stringify(module)};`,
      `const opened = await new HttpSource(${JSON.stringify(`${server.url}ok`)}, {}).open(new AbortController().signal);`,
      'opened.stream.destroy();',
      'const data = await opened.randomAccess.read(3_000_000, 2_000_000);',
      'await opened.randomAccess.close();',
      "const undici = Object.keys(createRequire(import.meta.url).cache).filter((p) => p.includes('/node_modules/undici/'));",
      'console.log(JSON.stringify({ length: data.length, undici: undici.length }));',
    ].join('\n');
    const before = server.requests.length;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', tsxLoader, '--input-type=module', '-e', script], { timeout: 20_000 });
    assert.deepEqual(JSON.parse(stdout), { length: 2_000_000, undici: 0 });
    assert.deepEqual(
      server.requests.slice(before).map((r) => r.range),
      ['bytes=0-65535', 'bytes=3000000-4999999'],
    );
  });

  it('falls back to undici for a chunked 206, and stays with undici for that server', async () => {
    const reader = await open('chunked');
    const before = server.requests.length;
    for (const offset of [2_000_000, 4_000_000]) {
      const data = await reader.read(offset, 1_500_000);
      assert.equal(sha256(data), sha256(content.subarray(offset, offset + 1_500_000)));
    }
    assert.equal(server.requests.length - before, 3, 'one direct try, then undici for both reads');
    await reader.close();
  });

  it('resumes stalled and dropped Range reads after the bytes that came, then says what happened', async () => {
    // These servers send half of whatever is asked, then stall or close: each retry asks for the
    // missing half, until the resume budget is spent and the failures in a row run out.
    const { retries, maxResumes } = quickTuning.retry!;
    for (const [mode, message] of [
      ['stall', /reading http:\/\/127\.0\.0\.1:\d+\/stall by Range failed: it went silent \d+ times with little data in between \(no data received for 0\.2 s, bytes 2000000-3499999\)/],
      ['drop', /request to 127\.0\.0\.1:\d+ failed: the server closed the connection after \d+ of \d+ bytes/],
    ] as const) {
      const reader = await open(mode, { stallTimeoutSeconds: 0.2 });
      const before = server.requests.length;
      await assert.rejects(reader.read(2_000_000, 1_500_000), (err: ImportError) => {
        assert.equal(err.category, 'cannot-connect');
        assert.match(err.message, message);
        return true;
      });
      const ranges = server.requests.slice(before).map((r) => r.range);
      assert.deepEqual(ranges.slice(0, 3), ['bytes=2000000-3499999', 'bytes=2750000-3499999', 'bytes=3125000-3499999'], mode);
      // The budget bounds it: at most maxResumes resumes with progress, then `retries` failures in a row.
      assert.ok(ranges.length > maxResumes && ranges.length <= 1 + maxResumes + retries, `${mode}: ${ranges.length} requests`);
      await reader.close();
    }
  });

  it('completes a Range read whose connection dropped once, asking only for the missing bytes', async () => {
    const reader = await open('drop-once');
    const before = server.requests.length;
    const data = await reader.read(2_000_000, 1_500_000);
    assert.equal(sha256(data), sha256(content.subarray(2_000_000, 3_500_000)));
    assert.deepEqual(
      server.requests.slice(before).map((r) => r.range),
      ['bytes=2000000-3499999', 'bytes=2750000-3499999'],
    );
    await reader.close();
  });

  it('streams by Range requests, and goes back to one undici GET when a Range answer is not a clean 206', async () => {
    for (const mode of ['ok', 'chunked'] as const) {
      const before = server.requests.length;
      const opened = await new HttpSource(`${server.url}${mode}`, {}, quickTuning).open(signal());
      const { sha256: got, length } = await digestStream(opened.stream);
      await opened.randomAccess?.close();
      assert.equal(length, content.length, mode);
      assert.equal(got, sha256(content), mode);
      const ranges = server.requests.slice(before).map((r) => r.range);
      // The probe and the stream's first MiB (ranges from 0 are always answered well).
      assert.deepEqual(ranges.slice(0, 2), ['bytes=0-65535', 'bytes=0-1048575'], mode);
      if (mode === 'ok') assert.ok(ranges.slice(1).every((r) => /^bytes=\d+-\d+$/.test(r!)), 'every byte by Range');
      // chunked: the 206s after the first MiB are chunked; the stream goes on with undici from byte 1 MiB.
      else assert.equal(ranges.at(-1), 'bytes=1048576-');
    }
  });

  it('leaves informational (103) answers to undici, which reads past them', async () => {
    const reader = await open('early-hints');
    const data = await reader.read(2_000_000, 1_500_000);
    assert.equal(sha256(data), sha256(content.subarray(2_000_000, 3_500_000)));
    await reader.close();
  });

  it('says which range a server answered wrongly', async () => {
    const reader = await open('wrong-range');
    await assert.rejects(reader.read(2_000_000, 1_500_000), (err: ImportError) => {
      assert.equal(err.category, 'cannot-connect');
      assert.match(err.message, /answered bytes 2000000-3499999 with bytes 2000001-3499999\//);
      return true;
    });
    await reader.close();
  });
});
