/** The HTTP source's small pieces: no_proxy matching, Content-Range, headers, the block cache. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BlockCacheReader } from '../../../src/sources/http/block-cache-reader.js';
import { HttpSource } from '../../../src/sources/http/index.js';
import { proxySettingsFromEnv } from '../../../src/sources/http/dispatcher.js';
import { bypassesProxy } from '../../../src/sources/http/no-proxy.js';
import { MAX_RETRY_AFTER_MS, retryAfterMs, retryDelay } from '../../../src/sources/http/retry-policy.js';
import { basicAuthorization, parseHeaderLines, redactedUrl } from '../../../src/sources/http/request-headers.js';
import type { ImportError } from '../../../src/errors.js';
import { receivesCredentials } from '../../../src/sources/http/http-request.js';
import { ifRangeValue, parseContentRange } from '../../../src/sources/http/resource-identity.js';
import { randomContent } from './helpers.js';

describe('no_proxy', () => {
  const u = (s: string) => new URL(s);
  it('matches hosts, domain suffixes, IPs, ports and *', () => {
    assert.equal(bypassesProxy(u('http://example.com/x'), 'example.com'), true);
    assert.equal(bypassesProxy(u('http://a.example.com/x'), '.example.com'), true);
    assert.equal(bypassesProxy(u('http://a.example.com/x'), 'example.com'), true);
    assert.equal(bypassesProxy(u('http://badexample.com/x'), 'example.com'), false);
    assert.equal(bypassesProxy(u('http://127.0.0.1:8080/x'), 'localhost, 127.0.0.1'), true);
    assert.equal(bypassesProxy(u('http://127.0.0.1:8080/x'), '127.0.0.1:9090'), false);
    assert.equal(bypassesProxy(u('https://h.svc/x'), 'h.svc:443'), true);
    assert.equal(bypassesProxy(u('http://anything/x'), '*'), true);
    assert.equal(bypassesProxy(u('http://[::1]:80/x'), '::1'), true);
    assert.equal(bypassesProxy(u('http://example.com/x'), undefined), false);
  });
  it('matches CIDR ranges for hosts given as IP addresses (cluster proxy settings list networks so)', () => {
    assert.equal(bypassesProxy(u('http://10.96.0.1/x'), '.svc,10.0.0.0/8'), true);
    assert.equal(bypassesProxy(u('http://127.0.0.1:8080/x'), '127.0.0.0/8'), true);
    assert.equal(bypassesProxy(u('http://192.168.1.9/x'), '192.168.1.0/24'), true);
    assert.equal(bypassesProxy(u('http://192.168.2.9/x'), '192.168.1.0/24'), false);
    assert.equal(bypassesProxy(u('http://[fd00::5]/x'), 'fd00::/8'), true);
    assert.equal(bypassesProxy(u('http://[fe80::5]/x'), 'fd00::/8'), false);
    assert.equal(bypassesProxy(u('http://10.1.2.3/x'), 'fd00::/8'), false, 'another family');
    assert.equal(bypassesProxy(u('http://ten.example/x'), '10.0.0.0/8'), false, 'names are not resolved');
    assert.equal(bypassesProxy(u('http://10.1.2.3/x'), '10.0.0.0/99,10.0.0.0/x'), false, 'malformed ranges match nothing');
  });
  it('reads lower-case variables before upper-case ones', () => {
    assert.deepEqual(proxySettingsFromEnv({ HTTP_PROXY: 'http://up', http_proxy: 'http://low', HTTPS_PROXY: 'http://s', NO_PROXY: 'x' }), {
      httpProxy: 'http://low',
      httpsProxy: 'http://s',
      noProxy: 'x',
    });
  });
  it('takes a proxy without a scheme as http://, and names the variable of one that is not a URL', () => {
    assert.deepEqual(proxySettingsFromEnv({ http_proxy: 'proxy.corp:3128', HTTPS_PROXY: '10.0.0.1:3128' }), {
      httpProxy: 'http://proxy.corp:3128',
      httpsProxy: 'http://10.0.0.1:3128',
      noProxy: undefined,
    });
    assert.throws(() => proxySettingsFromEnv({ https_proxy: 'http://bad host:1' }), /^ImportError: https_proxy \(or HTTPS_PROXY\) is not a proxy URL: "http:\/\/bad host:1"/);
    // SOCKS: refused with a line naming the variable (it left the process hanging), the password not shown.
    for (const scheme of ['socks5', 'socks5h', 'socks4']) {
      assert.throws(
        () => proxySettingsFromEnv({ http_proxy: `${scheme}://user:s3cret@127.0.0.1:1080` }),
        (err: Error) => new RegExp(`^http_proxy \\(or HTTP_PROXY\\) is a ${scheme} proxy .*: cdi-importer goes through http:// and https:// proxies only`).test(err.message) && !err.message.includes('s3cret'),
      );
    }
  });
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates, caps them at a minute, and ignores what it cannot read', () => {
    const now = Date.parse('Wed, 25 Nov 2026 10:00:00 GMT');
    assert.equal(retryAfterMs({ 'retry-after': '3' }, now), 3000);
    assert.equal(retryAfterMs({ 'retry-after': 'Wed, 25 Nov 2026 10:00:05 GMT' }, now), 5000);
    assert.equal(retryAfterMs({ 'retry-after': 'Wed, 25 Nov 2026 09:00:00 GMT' }, now), 0, 'a date in the past: no wait');
    assert.equal(retryAfterMs({ 'retry-after': '3600' }, now), MAX_RETRY_AFTER_MS);
    assert.equal(retryAfterMs({ 'retry-after': 'soon' }, now), undefined);
    assert.equal(retryAfterMs({}, now), undefined);
    const policy = { retries: 3, maxResumes: 3, baseDelayMs: 500, maxDelayMs: 10_000 };
    assert.equal(retryDelay(0, policy, 3000), 3000);
    assert.equal(retryDelay(3, policy, 1000), 4000, 'the backoff when it is longer');
    assert.equal(retryDelay(0, policy), 500);
  });
});

describe('headers and validators', () => {
  it('parses "Name: value" lines and rejects malformed ones', () => {
    assert.deepEqual(parseHeaderLines(['X-Token: a:b ', 'Accept:  */*']), { 'x-token': 'a:b', accept: '*/*' });
    assert.throws(() => parseHeaderLines(['no colon here']), /invalid header "no colon here": expected "Name: value"/);
    assert.throws(() => parseHeaderLines(['X-A: a\r\nX-B: b']), (err: ImportError) => err.category === 'usage' && /invalid header X-A: its value holds a line break/.test(err.message));
    assert.throws(() => parseHeaderLines([': empty name']), /invalid header/);
  });
  it('sends Basic auth only with both user and password', () => {
    assert.equal(basicAuthorization({ username: 'u', password: 'p' }), `Basic ${Buffer.from('u:p').toString('base64')}`);
    assert.equal(basicAuthorization({ username: 'u', password: '' }), undefined);
    assert.equal(basicAuthorization(undefined), undefined);
  });
  it('redacts credentials from URLs, even ones that do not parse', () => {
    assert.equal(redactedUrl(new URL('https://u:secret@h/x')), 'https://h/x');
    assert.throws(() => new HttpSource('http://u:secret@exa mple.com/x', {}), (err: Error) => !err.message.includes('secret') && /invalid URL/.test(err.message));
    assert.throws(() => new HttpSource('ftp://u:secret@example.com/x', {}), (err: Error) => !err.message.includes('secret') && /not an http\(s\) URL/.test(err.message));
    assert.throws(() => new HttpSource('http://u:se/cret@exa mple.com/x', {}), (err: Error) => !err.message.includes('cret') && err.message.includes('"http://***@exa mple.com/x"'));
  });
  it('shows no fragment (it is never sent), with a query or without', () => {
    assert.equal(redactedUrl(new URL('https://h/disk.img#part')), 'https://h/disk.img');
    assert.equal(redactedUrl(new URL('https://h/disk.img?sig=1#part')), 'https://h/disk.img?sig=***');
  });
  it('parses Content-Range and refuses nonsense', () => {
    assert.deepEqual(parseContentRange('bytes 10-19/100'), { start: 10, end: 19, total: 100 });
    assert.deepEqual(parseContentRange('bytes 10-19/*'), { start: 10, end: 19, total: undefined });
    assert.equal(parseContentRange('bytes 19-10/100'), undefined);
    assert.equal(parseContentRange('bytes 10-100/100'), undefined);
    assert.equal(parseContentRange('bytes 99999999999999999999-1/2'), undefined);
    assert.equal(parseContentRange(undefined), undefined);
  });
  it('uses a strong ETag for If-Range, else Last-Modified', () => {
    assert.equal(ifRangeValue({ etag: '"a"', lastModified: 'd', acceptsRanges: true }), '"a"');
    assert.equal(ifRangeValue({ etag: 'W/"a"', lastModified: 'd', acceptsRanges: true }), 'd');
  });
});

describe('BlockCacheReader', () => {
  const content = randomContent(1_000_000);
  const options = { blockSize: 4096, maxCachedBlocks: 8, maxReadAheadBlocks: 4 };
  const counting = () => {
    const calls: [number, number][] = [];
    const fetch = async (start: number, length: number) => {
      calls.push([start, length]);
      return Buffer.from(content.subarray(start, start + length));
    };
    return { calls, fetch };
  };

  it('returns exact bytes for any read, short at the end', async () => {
    const { fetch } = counting();
    const reader = new BlockCacheReader(content.length, fetch, options);
    for (const [offset, length] of [[0, 1], [4095, 2], [10_000, 50_000], [999_990, 100], [1_000_000, 5]] as const) {
      assert.deepEqual(await reader.read(offset, length), content.subarray(offset, Math.min(content.length, offset + length)));
    }
    await assert.rejects(reader.read(-1, 4), /invalid read/);
    await assert.rejects(reader.read(0, Number.MAX_SAFE_INTEGER + 1), /invalid read/);
  });

  it('serves repeated small reads from the cache and reads ahead on sequential reads', async () => {
    const { calls, fetch } = counting();
    const reader = new BlockCacheReader(content.length, fetch, options);
    for (let i = 0; i < 10; i++) await reader.read(100 + i * 8, 8);
    assert.equal(calls.length, 1);
    calls.length = 0;
    for (let offset = 8192; offset < 8192 + 40 * 4096; offset += 4096) await reader.read(offset, 4096);
    assert.ok(calls.length <= 14, `${calls.length} fetches for 40 sequential blocks`);
  });

  it('keeps at most maxCachedBlocks and coalesces concurrent reads of one block', async () => {
    const { calls, fetch } = counting();
    const reader = new BlockCacheReader(content.length, fetch, { ...options, maxReadAheadBlocks: 0 });
    await Promise.all([reader.read(0, 10), reader.read(20, 10), reader.read(4000, 10)]);
    assert.equal(calls.length, 1);
    for (let block = 10; block < 30; block += 2) await reader.read(block * 4096, 1);
    calls.length = 0;
    await reader.read(0, 10); // evicted by now
    assert.equal(calls.length, 1);
  });

  it('forgets a failed fetch so the next read tries again', async () => {
    let fail = true;
    const reader = new BlockCacheReader(content.length, async (start, length) => {
      if (fail) throw new Error('boom');
      return Buffer.from(content.subarray(start, start + length));
    }, options);
    await assert.rejects(reader.read(0, 10), /boom/);
    fail = false;
    assert.deepEqual(await reader.read(0, 10), content.subarray(0, 10));
  });
});

describe('where credentials follow a redirect', () => {
  it('the same origin, and a plain-http URL\'s own https on the default ports; no other host, port, or a downgrade', () => {
    const named = new URL('http://images.example/disk.qcow2');
    const cases: Array<[string, string, boolean]> = [
      ['http://images.example/other/path', 'http://images.example/disk.qcow2', true],
      ['https://images.example/disk.qcow2', 'http://images.example/disk.qcow2', true], // the "use HTTPS" redirect
      ['https://images.example:443/disk.qcow2', 'http://images.example:80/disk.qcow2', true], // default ports written out
      ['https://images.example:8443/disk.qcow2', 'http://images.example/disk.qcow2', false], // another port: maybe another service
      ['https://images.example/disk.qcow2', 'http://images.example:8080/disk.qcow2', false],
      ['http://images.example:8080/disk.qcow2', 'http://images.example/disk.qcow2', false],
      ['https://cdn.example/disk.qcow2', 'http://images.example/disk.qcow2', false],
      ['https://images.example.evil/disk.qcow2', 'http://images.example/disk.qcow2', false],
      ['http://images.example/disk.qcow2', 'https://images.example/disk.qcow2', false], // a downgrade to plain text
    ];
    assert.equal(receivesCredentials(new URL('http://images.example/x'), named), true);
    for (const [target, from, expected] of cases) {
      assert.equal(receivesCredentials(new URL(target), new URL(from)), expected, `${from} -> ${target}`);
    }
  });
});

