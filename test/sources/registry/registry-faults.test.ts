/**
 * Transport faults a real registry does not produce on demand, from a minimal in-process /v2/
 * server: a layer body that stalls, one cut short (resumed with Range, or failing when it keeps
 * happening), and the stream being dropped by its consumer.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { pack } from 'tar-stream';
import { RegistrySource } from '../../../src/sources/registry/index.js';

type Mode = 'ok' | 'stall' | 'short-once' | 'short-always' | 'redirect';

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

async function tarOf(files: Record<string, Buffer>): Promise<Buffer> {
  const p = pack();
  for (const [name, data] of Object.entries(files)) p.entry({ name, size: data.length }, data);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('registry source transport faults (in-process registry)', () => {
  let server: http.Server;
  let storage: http.Server;
  const storageAuthorizations: (string | undefined)[] = [];
  let host: string;
  let mode: Mode = 'ok';
  const blobRequests: string[] = [];
  let busyManifestAnswers = 0;
  let droppedPings = 0;
  let cutManifests = 0;
  const quickRetry = { retry: { retries: 1, maxResumes: 2, baseDelayMs: 10, maxDelayMs: 10 } };
  const disk = Buffer.alloc(3 << 20);
  for (let i = 0; i < disk.length; i += 4096) disk.writeUInt32LE(i, i);
  let layer: Buffer;
  let manifestDigest: string;
  /** Other one-layer images, served as fault/disk:layer-NAME. */
  const oddLayers: Record<string, Buffer> = {};
  const sockets = new Set<import('node:net').Socket>();

  before(async () => {
    layer = await tarOf({ 'disk/disk.img': disk });
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: [] } }));
    const manifestOf = (blob: Buffer) =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(blob), size: blob.length }],
        }),
      );
    const manifest = manifestOf(layer);
    // A layer that is the disk itself (an OCI artifact), and a tar compressed by `zstd --long=30`
    // from a pipe (so its frame asks for a 1 GiB window).
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'cdi-layer-'));
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', `${tmp}/bare.qcow2`, '16M']);
    oddLayers.bare = readFileSync(`${tmp}/bare.qcow2`);
    rmSync(tmp, { recursive: true });
    oddLayers['zstd-long'] = execFileSync('zstd', ['-q', '--long=30', '-c'], { input: layer });
    manifestDigest = sha256(manifest);
    storage = http.createServer((req, res) => {
      storageAuthorizations.push(req.headers.authorization);
      res.writeHead(200, { 'content-length': String(layer.length) }).end(layer);
    });
    await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
    const storagePort = (storage.address() as AddressInfo).port;
    server = http.createServer((req, res) => {
      const path = req.url ?? '';
      if (mode === 'redirect' && req.headers.authorization !== `Basic ${Buffer.from('bob:hunter2').toString('base64')}`) {
        return void res.writeHead(401, { 'www-authenticate': 'Basic realm="fault"' }).end();
      }
      if (mode === 'redirect' && path === `/v2/fault/disk/blobs/${sha256(layer)}`) {
        // Object storage behind a registry: another origin, which must not see the credentials.
        return void res.writeHead(307, { location: `http://127.0.0.1:${storagePort}/blob?sig=abc` }).end();
      }
      if (path === '/v2/' && droppedPings > 0) {
        droppedPings--;
        return void req.socket.destroy();
      }
      if (path === '/v2/') return void res.writeHead(200).end('{}');
      if (path === '/v2/fault/disk/manifests/v1' && busyManifestAnswers > 0) {
        busyManifestAnswers--;
        return void res.writeHead(503, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}');
      }
      if (path === '/v2/fault/disk/manifests/index-of-one') {
        const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length }] };
        return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json' }).end(JSON.stringify(index));
      }
      if (path === '/v2/fault/disk/manifests/schema1') {
        return void res
          .writeHead(200, { 'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' })
          .end(JSON.stringify({ schemaVersion: 1, name: 'fault/disk', tag: 'schema1', fsLayers: [] }));
      }
      if (path === '/v2/fault/disk/manifests/badsize') {
        const broken = JSON.parse(manifest.toString()) as { layers: { size: number }[] };
        broken.layers[0]!.size = -1;
        return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(JSON.stringify(broken));
      }
      // Any digest gets the v1 manifest: right for its own digest, a mismatch for any other.
      if (path === '/v2/fault/disk/manifests/v1' && cutManifests > 0) {
        cutManifests--;
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': String(manifest.length) });
        return void res.write(manifest.subarray(0, 40), () => req.socket.destroy());
      }
      if (path === '/v2/fault/disk/manifests/v1' || path.startsWith('/v2/fault/disk/manifests/sha256:')) {
        return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest);
      }
      if (path === `/v2/fault/disk/blobs/${sha256(config)}`) return void res.writeHead(200).end(config);
      const odd = /^\/v2\/fault\/disk\/manifests\/layer-(.+)$/.exec(path)?.[1];
      if (odd && oddLayers[odd]) {
        return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifestOf(oddLayers[odd]!));
      }
      const oddBlob = Object.values(oddLayers).find((blob) => path === `/v2/fault/disk/blobs/${sha256(blob)}`);
      if (oddBlob) return void res.writeHead(200, { 'content-length': String(oddBlob.length) }).end(oddBlob);
      if (path === `/v2/fault/disk/blobs/${sha256(layer)}`) {
        blobRequests.push(req.headers.range ?? 'full');
        const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
        const headers = { 'content-length': String(layer.length - start), 'accept-ranges': 'bytes' };
        if (start > 0) res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${layer.length - 1}/${layer.length}` });
        else res.writeHead(200, headers);
        const rest = layer.subarray(start);
        if (mode === 'ok' || (mode === 'short-once' && blobRequests.length > 1)) return void res.end(rest);
        res.write(rest.subarray(0, rest.length >> 1));
        // 'short-…': the connection drops mid-body; 'stall': it stays open, silent.
        if (mode !== 'stall') setTimeout(() => req.socket.destroy(), 50);
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
    });
    server.on('connection', (s) => (sockets.add(s), s.once('close', () => sockets.delete(s))));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
    storage.closeAllConnections();
    await new Promise((resolve) => storage.close(resolve));
  });

  async function readAll(source: RegistrySource, signal = new AbortController().signal): Promise<Buffer> {
    const opened = await source.open(signal);
    assert.equal(opened.size, disk.length);
    const chunks: Buffer[] = [];
    for await (const c of opened.stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  test('a healthy answer streams the disk bytes exactly', async () => {
    mode = 'ok';
    const bytes = await readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true }));
    assert.ok(bytes.equals(disk));
  });

  test('a layer body that keeps stalling fails after the stall timeout and the resume budget', async () => {
    // Each answer brings half of what is asked, then stalls. A resume after a stall always spends
    // the budget of 2, however much came before it (1.5 MiB, then 768 KiB): a server that sends a
    // little on each connection and then goes silent is not waited for without end.
    mode = 'stall';
    blobRequests.length = 0;
    const started = Date.now();
    const source = new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true, stallTimeoutSeconds: 1 }, quickRetry);
    await assert.rejects(readAll(source), (err: Error & { category?: string }) => {
      assert.equal(err.category, 'cannot-connect');
      // Silence, or the tail of the half-body trickling in just after the stall window opened
      // (it opens again each time the reader waits): both are the stall, said as it was seen.
      assert.match(
        err.message,
        /^download of http:\/\/127\.0\.0\.1:\d+\/v2\/fault\/disk\/blobs\/sha256:\w+ failed after \d+ of \d+ bytes and 2 retries: (no data received for 1 s|only \d+ bytes received in 1 s)$/,
      );
      return true;
    });
    assert.equal(blobRequests.length, 3);
    assert.ok(blobRequests.slice(1).every((range) => /^bytes=\d+-$/.test(range)), blobRequests.join(' '));
    assert.ok(Date.now() - started < 15_000);
  });

  test('a layer download cut short resumes with Range where it stopped: exact bytes, and the retry is heard', async () => {
    mode = 'short-once';
    blobRequests.length = 0;
    const retries: number[] = [];
    const tuning = { ...quickRetry, onRetry: (_reason: string, received: number) => retries.push(received) };
    const bytes = await readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true }, tuning));
    assert.ok(bytes.equals(disk));
    assert.equal(blobRequests.length, 2);
    assert.match(blobRequests[1]!, /^bytes=[1-9]\d*-$/);
    assert.deepEqual(retries, [Number(/^bytes=(\d+)-$/.exec(blobRequests[1]!)![1])], 'one retry, reported with the bytes received');
  });

  test('a layer download cut short again and again is a connection error, never a disk', async () => {
    mode = 'short-always';
    await assert.rejects(readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true }, quickRetry)), (err: Error & { category?: string }) => {
      assert.equal(err.category, 'cannot-connect', err.message);
      assert.match(err.message, /^download of .*\/v2\/fault\/disk\/blobs\/sha256:\w+ failed after \d+ of \d+ bytes and 5 retries/);
      return true;
    });
  });

  test('a busy registry (503) is asked again within the retry budget, then the error names the status', async () => {
    mode = 'ok';
    busyManifestAnswers = 1;
    const reasons: string[] = [];
    const tuning = { ...quickRetry, onRetry: (reason: string) => reasons.push(reason) };
    const bytes = await readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true }, tuning));
    assert.ok(bytes.equals(disk));
    assert.deepEqual(reasons, ['the server answered 503 Service Unavailable']);
    busyManifestAnswers = 2;
    await assert.rejects(readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true }, quickRetry)), (err: Error & { category?: string }) => {
      assert.equal(err.category, 'cannot-connect');
      assert.match(err.message, /expected status code 200, got 503\. Status: 503 Service Unavailable .*registry says UNAVAILABLE \(try later\)/);
      return true;
    });
    busyManifestAnswers = 0;
  });

  // Faults a retry cures, on the requests before any layer: once, the pull succeeds with one retry
  // heard; every time, it fails naming that request.
  for (const [what, inject, named] of [
    ['a dropped connection on the first request (the /v2/ ping)', (times: number) => (droppedPings = times), '/v2/'],
    ['a manifest cut off mid-body', (times: number) => (cutManifests = times), '/v2/fault/disk/manifests/v1'],
  ] as const) {
    test(`${what} is tried again, then named when it keeps happening`, async () => {
      mode = 'ok';
      inject(1);
      const reasons: string[] = [];
      const tuning = { ...quickRetry, onRetry: (reason: string) => reasons.push(reason) };
      const bytes = await readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true }, tuning));
      assert.ok(bytes.equals(disk));
      assert.equal(reasons.length, 1, reasons.join('\n'));
      assert.match(reasons[0]!, /other side closed|socket hang up|ECONNRESET|terminated/);
      inject(10);
      await assert.rejects(readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true }, quickRetry)), (err: Error & { category?: string }) => {
        assert.equal(err.category, 'cannot-connect');
        // The plain-http request's failure, not the https try's TLS error against a plain-http registry.
        assert.ok(err.message.includes(`http://${host}${named}`), err.message);
        assert.doesNotMatch(err.message, /TLS/);
        return true;
      });
      inject(0);
    });
  }

  test('manifests: by digest (checked), an index of one without platform, schema 1 refused, invalid sizes refused', async () => {
    mode = 'ok';
    const source = (ref: string) => new RegistrySource(`docker://${host}/fault/disk${ref}`, { insecure: true }, quickRetry);
    assert.ok((await readAll(source(`@${manifestDigest}`))).equals(disk));
    const wrong = `sha256:${'0'.repeat(64)}`;
    const refusal = (pattern: RegExp) => (err: Error & { category?: string }) => {
      assert.equal(err.category, 'bad-input');
      assert.match(err.message, pattern);
      return true;
    };
    await assert.rejects(readAll(source(`@${wrong}`)), refusal(new RegExp(`digest mismatch for manifest ${wrong} of .*: the registry served content hashing to ${manifestDigest}`)));
    assert.ok((await readAll(source(':index-of-one'))).equals(disk), 'an index of one manifest without platform');
    await assert.rejects(readAll(source(':schema1')), refusal(/is a Docker schema 1 image, which is not supported/));
    await assert.rejects(readAll(source(':badsize')), refusal(/manifest layers\[0\] has an invalid size -1/));
  });

  test('a layer that is a bare disk, and a layer zstd cannot decode within its memory limit, are said as such', async () => {
    mode = 'ok';
    const source = (ref: string) => new RegistrySource(`docker://${host}/fault/disk${ref}`, { insecure: true }, quickRetry);
    const refusal = (pattern: RegExp) => (err: Error & { category?: string }) => {
      assert.equal(err.category, 'bad-input');
      assert.match(err.message, pattern);
      assert.doesNotMatch(err.message, /gunzipped/);
      return true;
    };
    await assert.rejects(readAll(source(':layer-bare')), refusal(/^layer 1 of 1 \(sha256:[0-9a-f]+\) of .* is not a tar layer \(it is a bare qcow2 image\): a container disk holds its image as a file under \/disk\/ in a tar layer; .*OCI artifact.* not supported$/));
    await assert.rejects(readAll(source(':layer-zstd-long')), refusal(/^layer 1 of 1 \(sha256:[0-9a-f]+\) of .*: the zstd data needs more memory to decode than the decoder allows .*recompress it with a window of 128 MiB or less \(zstd --long=27 or less, or without --long\)$/));
  });

  test('Basic credentials go to the registry only, never along a blob redirect to another origin', async () => {
    mode = 'redirect';
    storageAuthorizations.length = 0;
    try {
      const bytes = await readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true, auth: { username: 'bob', password: 'hunter2' } }, quickRetry));
      assert.ok(bytes.equals(disk));
      assert.deepEqual(storageAuthorizations, [undefined]);
    } finally {
      mode = 'ok';
    }
  });

  test('dropping the stream early releases the download', async () => {
    mode = 'stall';
    const opened = await new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true }).open(new AbortController().signal);
    const closed = new Promise((resolve) => opened.stream.once('close', resolve));
    opened.stream.once('data', () => opened.stream.destroy());
    opened.stream.on('error', () => {});
    await closed;
    // The server side sees its socket closed once the client lets go.
    const deadline = Date.now() + 5000;
    while (sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(sockets.size, 0);
  });
});
