/**
 * A stop (SIGTERM, the deadline) that lands after an async upload's 200, while the pipeline is
 * finishing: the report says the upload did not complete, so no disk may stay looking complete,
 * even if the pipeline got to its end. A pipeline stub that finishes only once it is told to stop
 * makes the race certain.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { UploadServer, parseUploadEnvironment } from '../../src/upload/index.js';
import { podPaths } from '../../src/pod/paths.js';
import { createLogger } from '../../src/util/logger.js';
import type { ImportFunction } from '../../src/upload/upload-server.js';
import { makeTempDir, type TempDir } from '../support/tools.js';
import { makeUploadCertificates, type UploadCertificates } from './client-certificates.js';
import { curl } from './upload-harness.js';

let dir: TempDir;
let certs: UploadCertificates;
before(() => {
  dir = makeTempDir('cdi-upload-race-');
  certs = makeUploadCertificates(dir.join(), 'cdi-uploadproxy');
});
after(() => dir.remove());

/** The upload server's configuration for a pod root `name` under the test directory. */
function uploadConfig(name: string): ReturnType<typeof parseUploadEnvironment> {
  const root = dir.join(name);
  mkdirSync(`${root}/data`, { recursive: true });
  const env = {
    CDI_IMPORTER_ROOT: root,
    TLS_CERT_FILE: certs.server.cert,
    TLS_KEY_FILE: certs.server.key,
    CLIENT_CERT_FILE: certs.caCert,
    CLIENT_NAME: 'cdi-uploadproxy',
    LISTEN_ADDRESS: '127.0.0.1',
    LISTEN_PORT: '0',
    HEALTHZ_PORT: 'none',
  };
  return parseUploadEnvironment(env, podPaths(env));
}

test('a stop after the async 200, as the pipeline finishes: reported stopped, and the disk is removed', async () => {
  const config = uploadConfig('root');
  const finishOnStop: ImportFunction = async (request, ctx) => {
    assert.equal(request.source.kind, 'custom');
    const opened = await request.source.source.open(ctx.signal ?? new AbortController().signal);
    for await (const chunk of opened.stream) void chunk;
    ctx.onChecked?.();
    ctx.onSourceDecoded?.();
    writeFileSync(config.destination, 'a whole disk');
    await new Promise((resolve) => ctx.signal?.addEventListener('abort', resolve, { once: true }));
    return { formats: ['raw'], virtualSize: 12, targetSize: 12, sourceBytes: 4, bytesWritten: 12, scratchBytesUsed: 0, preallocationApplied: false };
  };
  const server = new UploadServer(config, createLogger({ level: 'silent' }), finishOnStop);
  const port = await server.start();
  try {
    writeFileSync(dir.join('body'), 'disk');
    const res = await curl(['--data-binary', `@${dir.join('body')}`, `https://127.0.0.1:${port}/v1beta1/upload-async`], certs.client, certs.caCert);
    assert.equal(res.status, 200, res.body);
    server.stop('SIGTERM');
    assert.deepEqual(await server.outcome, { kind: 'stopped', signal: 'SIGTERM' });
    for (let i = 0; i < 100 && existsSync(config.destination); i++) await sleep(20);
    assert.equal(existsSync(config.destination), false, 'no disk left looking complete');
  } finally {
    await server.close();
  }
});

test('an upload that arrives after a stop gets 503 (shutting down), not 409 (already uploaded)', async () => {
  const neverCalled: ImportFunction = () => Promise.reject(new Error('no upload should start'));
  const server = new UploadServer(uploadConfig('root-late'), createLogger({ level: 'silent' }), neverCalled);
  const port = await server.start();
  try {
    server.stop('SIGTERM');
    writeFileSync(dir.join('late-body'), 'disk');
    const res = await curl(['--data-binary', `@${dir.join('late-body')}`, `https://127.0.0.1:${port}/v1beta1/upload`], certs.client, certs.caCert);
    assert.equal(res.status, 503, res.body);
    assert.match(res.body, /shutting down/);
  } finally {
    await server.close();
  }
});
