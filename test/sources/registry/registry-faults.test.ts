/**
 * Transport faults a real registry does not produce on demand, from a minimal in-process /v2/
 * server: a layer body that stalls, one cut short, and the stream being dropped by its consumer.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { pack } from 'tar-stream';
import { RegistrySource } from '../../../src/sources/registry/index.js';

type Mode = 'ok' | 'stall' | 'short';

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
  let host: string;
  let mode: Mode = 'ok';
  const disk = Buffer.alloc(3 << 20);
  for (let i = 0; i < disk.length; i += 4096) disk.writeUInt32LE(i, i);
  let layer: Buffer;
  const sockets = new Set<import('node:net').Socket>();

  before(async () => {
    layer = await tarOf({ 'disk/disk.img': disk });
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: [] } }));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
      }),
    );
    server = http.createServer((req, res) => {
      const path = req.url ?? '';
      if (path === '/v2/') return void res.writeHead(200).end('{}');
      if (path === '/v2/fault/disk/manifests/v1') {
        return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest);
      }
      if (path === `/v2/fault/disk/blobs/${sha256(config)}`) return void res.writeHead(200).end(config);
      if (path === `/v2/fault/disk/blobs/${sha256(layer)}`) {
        res.writeHead(200, { 'content-length': String(layer.length) });
        if (mode === 'ok') return void res.end(layer);
        res.write(layer.subarray(0, layer.length >> 1));
        // 'short': the connection drops mid-body; 'stall': it stays open, silent.
        if (mode === 'short') setTimeout(() => req.socket.destroy(), 50);
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

  test('a layer body that stalls fails after the stall timeout with a connection error', async () => {
    mode = 'stall';
    const started = Date.now();
    await assert.rejects(readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true, stallTimeoutSeconds: 1 })), (err: Error & { category?: string }) => {
      assert.equal(err.category, 'cannot-connect');
      assert.match(err.message, /did not answer in time \(no data received for 1 s\)/);
      return true;
    });
    assert.ok(Date.now() - started < 10_000);
  });

  test('a layer body cut short is a connection error, never a disk', async () => {
    mode = 'short';
    await assert.rejects(readAll(new RegistrySource(`docker://${host}/fault/disk:v1`, { insecure: true })), (err: Error & { category?: string }) => {
      assert.equal(err.category, 'cannot-connect', err.message);
      assert.match(err.message, /^request to 127\.0\.0\.1:\d+ failed: .*\/v2\/fault\/disk\/blobs\/sha256:/);
      return true;
    });
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
