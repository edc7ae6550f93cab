/**
 * Pod mode while an import runs: the progress metric scraped over HTTPS from a throttled
 * download (SPEC §4.4), and SIGTERM in the middle of one.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { repoRoot } from '../support/cli.js';
import { freePort, waitForPort } from '../support/free-port.js';
import { makeTempDir, qemuRawSha256, sha256File, type TempDir } from '../support/tools.js';
import { makePodRoot, scrape, startPod, type PodRoot } from './pod-harness.js';
import { startTrickleServer, type TrickleServer } from './trickle-server.js';

const MiB = 1 << 20;
const here = path.dirname(fileURLToPath(import.meta.url));
const OWNER = 'a1b2c3d4-0000-4000-8000-123456789abc';
/** The regular expression CDI's controller applies to the scrape. */
const CONTROLLER_REGEX = new RegExp(`kubevirt_cdi_import_progress_total\\{ownerUID="${OWNER}"\\} (\\d{1,3}\\.?\\d*)`);

describe('pod mode while importing', () => {
  let dir: TempDir;
  let content: Buffer;
  const roots: PodRoot[] = [];
  const servers: TrickleServer[] = [];

  before(() => {
    dir = makeTempDir('cdi-pod-slow-');
    content = randomBytes(6 * MiB);
    writeFileSync(dir.join('raw.img'), content);
  });

  after(async () => {
    for (const server of servers) await server.stop();
    for (const root of roots) root.remove();
    dir?.remove();
  });

  test('the progress metric rises monotonically from 0 to 100 over HTTPS and matches the controller regex', async () => {
    const server = await startTrickleServer(content, 3 * MiB, 800);
    servers.push(server);
    const root = makePodRoot();
    roots.push(root);
    const port = await freePort();
    const pod = startPod(root, {
      IMPORTER_SOURCE: 'http',
      IMPORTER_ENDPOINT: server.url,
      OWNER_UID: OWNER,
      PREALLOCATION: 'false',
      FILESYSTEM_OVERHEAD: '0',
      CDI_IMPORTER_METRICS_PORT: String(port),
      CDI_IMPORTER_METRICS_LINGER_SECONDS: '1.5',
    });
    let done = false;
    void pod.exited.then(() => (done = true));
    await waitForPort(port, 30_000);
    const values: number[] = [];
    let bytesSeen = false;
    while (!done) {
      const body = await scrape(port).catch(() => undefined);
      if (body) {
        const match = CONTROLLER_REGEX.exec(body);
        assert.ok(match, `scrape does not match the controller's regex:\n${body}`);
        values.push(Number(match[1]));
        if (/kubevirt_cdi_import_progress_bytes\{ownerUID="[^"]+"\} [1-9]/.test(body)) bytesSeen = true;
      }
      await sleep(100);
    }
    const { code } = await pod.exited;
    assert.equal(code, 0, pod.stderr());
    assert.equal(values[0], 0, `first value ${values[0]}`);
    assert.equal(values.at(-1), 100, `last value ${values.at(-1)}`);
    for (let i = 1; i < values.length; i++) assert.ok(values[i]! >= values[i - 1]!, `fell from ${values[i - 1]} to ${values[i]}`);
    const between = values.filter((v) => v > 0 && v < 100);
    assert.ok(between.length >= 3, `too few intermediate values: ${values.join(' ')}`);
    assert.ok(bytesSeen, 'the bytes gauge never moved');
    assert.equal(await sha256File(root.diskImage), await qemuRawSha256(dir.join('raw.img'), dir.path));
  });

  test('SIGTERM mid-import: exits non-zero within seconds, failure message, no partial disk.img', async () => {
    const server = await startTrickleServer(content, 1 * MiB);
    servers.push(server);
    const root = makePodRoot();
    roots.push(root);
    const pod = startPod(root, { IMPORTER_SOURCE: 'http', IMPORTER_ENDPOINT: server.url, PREALLOCATION: 'false' });
    const deadline = Date.now() + 30_000;
    while (!(existsSync(root.diskImage) && server.sent() > MiB)) {
      assert.ok(Date.now() < deadline, `the import never started: ${pod.stderr()}`);
      await sleep(50);
    }
    const signalled = Date.now();
    pod.child.kill('SIGTERM');
    const { code } = await pod.exited;
    const elapsed = Date.now() - signalled;
    assert.ok(elapsed < 5_000, `took ${elapsed} ms to stop`);
    assert.equal(code, 1, pod.stderr());
    assert.ok(server.sent() < content.length, 'the whole image was sent: the test did not interrupt anything');
    assert.equal(root.terminationMessage(), 'Unable to process data: import cancelled: received SIGTERM');
    assert.equal(existsSync(root.diskImage), false);
  });

  test('SIGTERM after the import finished (while the metric lingers): exit 0, the success message stays', async () => {
    const root = makePodRoot();
    roots.push(root);
    const pod = startPod(root, { IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '8Mi', PREALLOCATION: 'false', CDI_IMPORTER_METRICS_LINGER_SECONDS: '30' });
    const deadline = Date.now() + 30_000;
    while (root.terminationMessage() === undefined) {
      assert.ok(Date.now() < deadline, `no termination message: ${pod.stderr()}`);
      await sleep(50);
    }
    const signalled = Date.now();
    pod.child.kill('SIGTERM');
    const { code } = await pod.exited;
    assert.ok(Date.now() - signalled < 3_000);
    assert.equal(code, 0, pod.stderr());
    assert.equal(root.terminationMessage(), '{"message":"Import Complete","preallocationApplied":false}');
  });

  test('SIGTERM when the pipeline does not stop: the importer still leaves after the grace period, with the report', async () => {
    const root = makePodRoot();
    roots.push(root);
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures', 'stuck-pipeline-pod.ts')], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH, CDI_IMPORTER_ROOT: root.path, CDI_IMPORTER_METRICS_PORT: '0', IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '1Mi' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('stuck') && resolve()));
    assert.equal(existsSync(root.diskImage), true);
    const signalled = Date.now();
    child.kill('SIGTERM');
    const code = await exited;
    const elapsed = Date.now() - signalled;
    assert.ok(elapsed >= 4_000 && elapsed < 8_000, `left after ${elapsed} ms`);
    assert.equal(code, 1);
    assert.equal(root.terminationMessage(), 'Unable to process data: import cancelled: received SIGTERM');
    assert.equal(existsSync(root.diskImage), false);
  });
});
