/**
 * The upload server end to end (SPEC §5.3, §9): the real binary, real TLS with client
 * certificates made by openssl, curl as the client, qemu-img as the oracle for the bytes written.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { buildSampleTree, diffTrees, treeListing } from '../support/tar-fixtures.js';
import { freePorts } from '../support/free-port.js';
import { makeTempDir, qemuRawSha256, run, sh, sha256File, type TempDir } from '../support/tools.js';
import { makeUploadCertificates, type UploadCertificates } from './client-certificates.js';
import { binary, connectAsClient, curl, formFile, startUploadServer, type RunningUploadServer } from './upload-harness.js';

const MiB = 1 << 20;

describe('upload server', () => {
  let dir: TempDir;
  let certs: UploadCertificates;
  const servers: RunningUploadServer[] = [];

  async function server(env: NodeJS.ProcessEnv = {}): Promise<RunningUploadServer> {
    const started = await startUploadServer(certs, env);
    servers.push(started);
    return started;
  }
  const post = (s: RunningUploadServer, pathname: string, args: string[], cert = certs.client) => curl([...args, s.url(pathname)], cert, certs.caCert);

  before(() => {
    dir = makeTempDir('cdi-upload-images-');
    certs = makeUploadCertificates(dir.join(), 'cdi-uploadproxy');
    makeDiskLikeImage(dir.join('disk.raw'), 6 * MiB);
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', dir.join('disk.raw'), dir.join('disk.qcow2')]);
    run('qemu-img', ['create', '-f', 'qcow2', dir.join('small.qcow2'), '4M']);
    run('qemu-io', ['-c', 'write -P 0x5a 512k 1M', dir.join('small.qcow2')]);
    run('qemu-img', ['create', '-f', 'qcow2', dir.join('big.qcow2'), '64M']);
    sh(`xz -T1 -k -c ${dir.join('disk.qcow2')} > ${dir.join('disk.qcow2.xz')}`);
    sh(`gzip -c ${dir.join('disk.raw')} > ${dir.join('disk.raw.gz')}`);
    sh(`gzip -c ${dir.join('disk.qcow2')} > ${dir.join('disk.qcow2.gz')}`);
    sh(`xz -T1 -0 -c ${dir.join('disk.raw')} > ${dir.join('disk.raw.xz')}`);
    sh(`zstd -q -c ${dir.join('disk.qcow2')} > ${dir.join('disk.qcow2.zst')}`);
    // A gzip stream cut in the middle: detected as gzip, fails while decompressing.
    sh(`head -c 200000 ${dir.join('disk.raw.gz')} > ${dir.join('corrupt.raw.gz')}`);
    sh(`mkdir ${dir.join('tree')}`);
    buildSampleTree(dir.join('tree'), { longFileName: false });
    sh(`tar -C ${dir.join('tree')} -czf ${dir.join('tree.tar.gz')} .`);
  });

  after(() => {
    for (const s of servers) {
      s.kill();
      s.root.remove();
    }
    dir?.remove();
  });

  async function assertCompleted(s: RunningUploadServer, image: string, size?: number): Promise<void> {
    assert.equal(await s.exited, 0, s.stderr());
    assert.deepEqual(JSON.parse(s.terminationMessage()), { preallocationApplied: false, message: 'Upload Complete' });
    assert.equal(await sha256File(s.destination), await qemuRawSha256(image, dir.path, size));
  }

  test('refusals, a too-large image (400), a corrupt one (500), then a retry that completes; 409 after', async () => {
    const [healthzPort, metricsPort] = (await freePorts(2)) as [number, number];
    const s = await server({
      UPLOAD_IMAGE_SIZE: '4Mi',
      CDI_IMPORTER_UPLOAD_LINGER_SECONDS: '20',
      HEALTHZ_PORT: String(healthzPort),
      CDI_IMPORTER_METRICS_PORT: String(metricsPort),
      OWNER_UID: 'pvc-uid-1',
    });
    const health = await curl([s.url('/healthz')], certs.client, certs.caCert);
    assert.deepEqual([health.status, health.body], [200, 'OK']);
    const plainHealth = await curl([`http://127.0.0.1:${healthzPort}/healthz`], null, certs.caCert);
    assert.deepEqual([plainHealth.status, plainHealth.body], [200, 'OK'], 'the readiness probe port (plain HTTP)');
    // CDI's proxy probes the async endpoints with HEAD.
    assert.equal((await curl(['-I', s.url('/v1beta1/upload-async')], certs.client, certs.caCert)).status, 200);
    assert.equal((await curl(['-I', s.url('/v1beta1/upload')], certs.client, certs.caCert)).status, 404);

    assert.equal((await curl([s.url('/v1beta1/upload')], certs.client, certs.caCert)).status, 404, 'GET is not an upload');
    assert.equal((await post(s, '/v1beta1/nothing-here', binary(dir.join('small.qcow2')))).status, 404);
    assert.match(s.stderr(), /no such upload endpoint/, 'a refusal leaves a line in the log');
    assert.equal((await post(s, '/v1beta1/upload', binary(dir.join('small.qcow2')), certs.wrongName)).status, 401);

    const noCert = await curl([...binary(dir.join('small.qcow2')), s.url('/v1beta1/upload')], null, certs.caCert);
    assert.notEqual(noCert.exitCode, 0, 'without a client certificate the TLS handshake must fail');
    assert.equal(noCert.status, 0);
    const untrusted = await post(s, '/v1beta1/upload', binary(dir.join('small.qcow2')), certs.untrusted);
    assert.notEqual(untrusted.exitCode, 0, 'a certificate from another CA must not get through');

    const notForm = await post(s, '/v1beta1/upload-form', binary(dir.join('small.qcow2')));
    assert.equal(notForm.status, 400, notForm.body);
    assert.match(notForm.body, /multipart\/form-data/);
    assert.match(s.stderr(), /upload refused/);
    // Forms without a "file" part, small (over before the import opens the body) and image-sized:
    // a 400 naming the parts found, and the server stays up for the uploads below.
    for (const field of ['name=disk', `image=@${dir.join('small.qcow2')}`]) {
      const noFile = await post(s, '/v1beta1/upload-form', ['-F', field]);
      assert.equal(noFile.status, 400, `-F ${field}: ${noFile.body}`);
      assert.match(noFile.body, /no part named "file" \(parts found: (name|image)\)/);
    }

    // The client goes away mid-body: the upload fails, the server takes the next one.
    const failuresBefore = s.stderr().split('Saving stream failed').length;
    const cut = await post(s, '/v1beta1/upload', ['--limit-rate', '100K', '--max-time', '1', ...binary(dir.join('small.qcow2'))]);
    assert.equal(cut.exitCode, 28, `curl should time out mid-upload: ${cut.stderr}`);
    // Until the server has seen the client go (a busy machine may take a moment), a new upload gets
    // 503 (one is running): wait for its log line, as a proxy would retry.
    for (let i = 0; i < 200 && s.stderr().split('Saving stream failed').length === failuresBefore; i++) await new Promise((resolve) => setTimeout(resolve, 50));

    const tooLarge = await post(s, '/v1beta1/upload', binary(dir.join('big.qcow2')));
    assert.equal(tooLarge.status, 400, tooLarge.body);
    assert.match(tooLarge.body, /is larger than the reported available storage/);
    // Async answers once the body is in and its size has been checked: a small body that cannot
    // fit gets the same 400, never a 200 followed by a failed import.
    const tooLargeAsync = await post(s, '/v1beta1/upload-async', binary(dir.join('big.qcow2')));
    assert.equal(tooLargeAsync.status, 400, tooLargeAsync.body);
    assert.match(tooLargeAsync.body, /is larger than the reported available storage/);
    // A gzip raw image shows its size only as it is decoded: async waits for that before its answer.
    const tooLargeGzipAsync = await post(s, '/v1beta1/upload-async', binary(dir.join('disk.raw.gz')));
    assert.equal(tooLargeGzipAsync.status, 400, tooLargeGzipAsync.body);
    assert.match(tooLargeGzipAsync.body, /is larger than the reported available storage/);
    const corruptAsync = await post(s, '/v1beta1/upload-async', binary(dir.join('corrupt.raw.gz')));
    assert.equal(corruptAsync.status, 500, corruptAsync.body);
    // curl -F to the raw endpoint: refused with the fix, not imported with the form's envelope.
    const formToRaw = await post(s, '/v1beta1/upload', formFile(dir.join('small.qcow2')));
    assert.equal(formToRaw.status, 400, formToRaw.body);
    assert.match(formToRaw.body, /the body is a multipart form \(curl -F\); .*curl --data-binary @disk\.img, or use the form endpoint \/v1beta1\/upload-form$/m);

    // A host-assisted clone stream (CDI's cloner sends these): refused, never written as the disk.
    for (const kind of ['blockdevice-clone', 'filesystem-clone']) {
      const clone = await post(s, '/v1beta1/upload', ['-H', `x-cdi-content-type: ${kind}`, ...binary(dir.join('small.qcow2'))]);
      assert.equal(clone.status, 400, clone.body);
      assert.match(clone.body, new RegExp(`^x-cdi-content-type: ${kind} is a host-assisted clone stream, which this upload server does not take: `, 'm'));
    }

    const corrupt = await post(s, '/v1beta1/upload', binary(dir.join('corrupt.raw.gz')));
    assert.equal(corrupt.status, 500, corrupt.body);
    assert.equal(corrupt.body.trim().split('\n').length, 1, `one line: ${corrupt.body}`);
    assert.ok(corrupt.body.trim().length > 0);

    const ok = await post(s, '/v1beta1/upload', binary(dir.join('small.qcow2')));
    assert.equal(ok.status, 200, ok.body);
    const again = await post(s, '/v1beta1/upload', binary(dir.join('small.qcow2')));
    assert.equal(again.status, 409);
    const metrics = await curl(['-k', `https://127.0.0.1:${metricsPort}/metrics`], null, certs.caCert);
    assert.match(metrics.body, /^kubevirt_cdi_import_progress_total\{ownerUID="pvc-uid-1"\} 100$/m);
    const sentBytes = statSync(dir.join('small.qcow2')).size;
    assert.match(metrics.body, new RegExp(`^kubevirt_cdi_import_source_size_bytes\\{ownerUID="pvc-uid-1"\\} ${sentBytes}$`, 'm'), 'from Content-Length');
    s.child.kill('SIGTERM'); // ends the linger
    await assertCompleted(s, dir.join('small.qcow2'), 4 * MiB);
  });

  test('started as CDI starts its upload pod (no command, only -v=1, the upload variables): an upload server', async () => {
    const started = await startUploadServer(certs, { IMPORTER_SOURCE: undefined }, ['-v=1']);
    servers.push(started);
    const res = await post(started, '/v1beta1/upload', binary(dir.join('disk.raw')));
    assert.equal(res.status, 200, res.body);
    await assertCompleted(started, dir.join('disk.raw'));
  });

  test('raw, sync endpoint', async () => {
    const s = await server();
    const res = await post(s, '/v1beta1/upload', binary(dir.join('disk.raw')));
    assert.equal(res.status, 200, res.body);
    await assertCompleted(s, dir.join('disk.raw'));
  });

  test('qcow2 through the v1alpha1 form endpoint (other form fields ignored)', async () => {
    const s = await server();
    const res = await post(s, '/v1alpha1/upload-form', formFile(dir.join('disk.qcow2')));
    assert.equal(res.status, 200, res.body);
    await assertCompleted(s, dir.join('disk.qcow2'));
  });

  test('qcow2.xz through the async endpoint: 200 once received, the server finishes and exits', async () => {
    const s = await server();
    const res = await post(s, '/v1beta1/upload-async', binary(dir.join('disk.qcow2.xz')));
    assert.equal(res.status, 200, res.body);
    await assertCompleted(s, dir.join('disk.qcow2'));
  });

  test('raw.gz through the async form endpoint, grown to UPLOAD_IMAGE_SIZE', async () => {
    const s = await server({ UPLOAD_IMAGE_SIZE: '8Mi' });
    const res = await post(s, '/v1beta1/upload-form-async', formFile(dir.join('disk.raw.gz')));
    assert.equal(res.status, 200, res.body);
    await assertCompleted(s, dir.join('disk.raw'), 8 * MiB);
  });

  // The rest of SPEC §2's Upload column, through the v1alpha1 alias.
  for (const [file, original] of [['disk.qcow2.gz', 'disk.qcow2'], ['disk.raw.xz', 'disk.raw']]) {
    test(`${file} through /v1alpha1/upload`, async () => {
      const s = await server();
      const res = await post(s, '/v1alpha1/upload', binary(dir.join(file)));
      assert.equal(res.status, 200, res.body);
      await assertCompleted(s, dir.join(original));
    });
  }

  test('qcow2.zst, sync, with PREALLOCATION=true', async () => {
    const s = await server({ PREALLOCATION: 'true' });
    const res = await post(s, '/v1beta1/upload', binary(dir.join('disk.qcow2.zst')));
    assert.equal(res.status, 200, res.body);
    assert.equal(await s.exited, 0, s.stderr());
    assert.deepEqual(JSON.parse(s.terminationMessage()), { preallocationApplied: true, message: 'Upload Complete' });
    assert.equal(await sha256File(s.destination), await qemuRawSha256(dir.join('disk.qcow2'), dir.path));
    assert.ok(statSync(s.destination).blocks * 512 >= 6 * MiB, 'preallocated');
  });

  test('archive endpoint: a tar.gz extracted into the destination directory', async () => {
    const s = await server();
    const res = await post(s, '/v1beta1/upload-archive', binary(dir.join('tree.tar.gz')));
    assert.equal(res.status, 200, res.body);
    assert.equal(await s.exited, 0, s.stderr());
    assert.equal(JSON.parse(s.terminationMessage()).message, 'Upload Complete');
    const expected = dir.join('expected-tree');
    sh(`mkdir -p ${expected} && tar -C ${expected} -xzf ${dir.join('tree.tar.gz')}`);
    assert.equal(diffTrees(expected, s.root.join('data')), '');
    assert.deepEqual(treeListing(s.root.join('data')), treeListing(expected));
  });

  test('after a hard kill: what the killed attempt left in the data and scratch volumes is removed before the next upload', async () => {
    const s = await startUploadServer(certs, {}, ['upload-server'], { scratch: true });
    servers.push(s);
    // Half an archive (an entry the tar also has), a stray file, and a dead attempt's spill file.
    sh(`tar -C ${s.root.join('data')} -xzf ${dir.join('tree.tar.gz')}`);
    writeFileSync(s.root.join('data', 'stray.txt'), 'from the killed attempt');
    writeFileSync(s.root.join('scratch', 'qcow2-spill-1234-abcdef'), Buffer.alloc(MiB, 1));
    const res = await post(s, '/v1beta1/upload-archive', binary(dir.join('tree.tar.gz')));
    assert.equal(res.status, 200, res.body);
    assert.equal(await s.exited, 0, s.stderr());
    const expected = dir.join('expected-tree-again');
    sh(`mkdir -p ${expected} && tar -C ${expected} -xzf ${dir.join('tree.tar.gz')}`);
    assert.deepEqual(treeListing(s.root.join('data')), treeListing(expected), 'the stray file is gone, the tree is whole');
    assert.deepEqual(readdirSync(s.root.join('scratch')), []);
  });

  test('a second upload while one runs gets 503; the first completes', async () => {
    const s = await server();
    const slow = post(s, '/v1beta1/upload', ['--limit-rate', '2M', ...binary(dir.join('disk.raw'))]);
    // The second request goes once the server has taken the first one.
    for (let i = 0; i < 200 && !s.stderr().includes('Upload started'); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.match(s.stderr(), /Upload started/);
    const second = await post(s, '/v1beta1/upload', binary(dir.join('small.qcow2')));
    assert.equal(second.status, 503);
    const first = await slow;
    assert.equal(first.status, 200, first.body);
    await assertCompleted(s, dir.join('disk.raw'));
  });

  test('IMPORTER_CHECKSUM: a mismatch is a 500 and the right bytes may follow', async () => {
    const expected = await sha256File(dir.join('disk.raw.gz'));
    const s = await server({ IMPORTER_CHECKSUM: `sha256:${expected}` });
    const wrong = await post(s, '/v1beta1/upload', binary(dir.join('disk.raw')));
    assert.equal(wrong.status, 500, wrong.body);
    assert.match(wrong.body, /checksum mismatch/);
    const right = await post(s, '/v1beta1/upload', binary(dir.join('disk.raw.gz')));
    assert.equal(right.status, 200, right.body);
    await assertCompleted(s, dir.join('disk.raw'));
  });

  test('async: a truncated .qcow2.gz gets its 500 before any 200 (found by a QA pass: 200, then the failure); the whole one then completes', async () => {
    sh(`head -c -100 ${dir.join('disk.qcow2.gz')} > ${dir.join('truncated.qcow2.gz')}`);
    const s = await server();
    for (const endpoint of ['/v1beta1/upload-async', '/v1beta1/upload-form-async']) {
      const args = endpoint.includes('form') ? formFile(dir.join('truncated.qcow2.gz')) : binary(dir.join('truncated.qcow2.gz'));
      const res = await post(s, endpoint, args);
      assert.equal(res.status, 500, `${endpoint}: ${res.body}`);
      assert.match(res.body, /gzip/);
    }
    const whole = await post(s, '/v1beta1/upload-async', binary(dir.join('disk.qcow2.gz')));
    assert.equal(whole.status, 200, whole.body);
    await assertCompleted(s, dir.join('disk.qcow2'));
  });

  test('a client that goes silent mid-body (no FIN, no RST) is dropped after the stall timeout, and a retry gets through', { timeout: 60_000 }, async () => {
    const s = await server({ CDI_IMPORTER_UPLOAD_STALL_SECONDS: '1' });
    const silent = await connectAsClient(s.port, certs.client, certs.caCert);
    silent.write(`POST /v1beta1/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${64 * MiB}\r\n\r\n`);
    silent.write(readFileSync(dir.join('disk.raw')).subarray(0, MiB));
    const closed = once(silent, 'close');
    silent.on('error', () => {});
    await closed; // the server hung up on it
    for (let i = 0; i < 100 && !/the upload stalled/.test(s.stderr()); i++) await sleep(50);
    assert.match(s.stderr(), /the upload stalled: nothing arrived for 1 s after \d+ bytes of the body/);
    const retry = await post(s, '/v1beta1/upload', binary(dir.join('disk.raw')));
    assert.equal(retry.status, 200, retry.body);
    await assertCompleted(s, dir.join('disk.raw'));
  });

  test('a form whose connection drops while a field after the file part is sent: the image, all there, completes', { timeout: 60_000 }, async () => {
    const s = await server();
    const boundary = 'b'.repeat(80); // longer than RFC 2046's 70: taken whole (found by a QA pass: it was cut)
    const image = readFileSync(dir.join('disk.qcow2'));
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="disk.qcow2"\r\n\r\n`);
    const trailer = Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="notes"\r\n\r\n`);
    const client = await connectAsClient(s.port, certs.client, certs.caCert);
    client.on('error', () => {});
    const length = head.length + image.length + trailer.length + 30 * MiB; // a large field that never comes
    client.write(`POST /v1beta1/upload-form HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${length}\r\n\r\n`);
    client.write(Buffer.concat([head, image, trailer, Buffer.alloc(MiB, 0x61)]));
    await sleep(500);
    client.destroy();
    await assertCompleted(s, dir.join('disk.qcow2'));
  });

  test('a form upload moves the progress metric as it arrives (from the form\'s Content-Length; it stayed at 0)', { timeout: 60_000 }, async () => {
    const [metricsPort] = (await freePorts(1)) as [number];
    const s = await server({ CDI_IMPORTER_METRICS_PORT: String(metricsPort), OWNER_UID: 'pvc-uid-2' });
    sh(`head -c ${24 * MiB} /dev/urandom > ${dir.join('random.raw')}`);
    const uploading = post(s, '/v1beta1/upload-form', ['--limit-rate', '8M', ...formFile(dir.join('random.raw'))]);
    await sleep(1500);
    const metrics = await curl(['-k', `https://127.0.0.1:${metricsPort}/metrics`], null, certs.caCert);
    const percent = Number(/^kubevirt_cdi_import_progress_total\{ownerUID="pvc-uid-2"\} ([\d.]+)$/m.exec(metrics.body)?.[1]);
    assert.ok(percent > 0 && percent < 100, `progress ${percent} midway: ${metrics.body}`);
    assert.equal((await uploading).status, 200);
    await assertCompleted(s, dir.join('random.raw'));
  });

  test('outside a pod, a DESTINATION file the refused upload never touched is left as it was', async () => {
    const own = makeTempDir('cdi-upload-own-');
    try {
      const destination = own.join('disk.img');
      writeFileSync(destination, 'an image that was here before');
      const s = await server({ DESTINATION: destination, UPLOAD_IMAGE_SIZE: '4Mi' });
      const tooLarge = await post(s, '/v1beta1/upload', binary(dir.join('big.qcow2')));
      assert.equal(tooLarge.status, 400, tooLarge.body);
      const noFile = await post(s, '/v1beta1/upload-form', ['-F', 'name=disk']);
      assert.equal(noFile.status, 400, noFile.body);
      assert.equal(readFileSync(destination, 'utf8'), 'an image that was here before');
    } finally {
      own.remove();
    }
  });

  test('async: a checksum mismatch found after the 200 ends the server with exit 1 and no disk', async () => {
    const s = await server({ IMPORTER_CHECKSUM: `sha256:${'0'.repeat(64)}` });
    const res = await post(s, '/v1beta1/upload-async', binary(dir.join('disk.raw')));
    assert.equal(res.status, 200, res.body);
    assert.equal(await s.exited, 1, s.stderr());
    assert.match(s.terminationMessage(), /^Unable to process data: checksum mismatch/);
    assert.equal(existsSync(s.destination), false, 'a failed import must not leave a disk');
  });

  test('block device destination: the image bytes on the device, also right after a refused upload', { skip: process.getuid?.() !== 0 ? 'needs root for losetup' : false }, async () => {
    const backing = dir.join('block-backing.img');
    sh(`head -c ${16 * MiB} /dev/zero | tr '\\0' '\\253' > ${backing}`);
    const device = run('losetup', ['-f', '--show', backing]).trim();
    try {
      // 12 MiB on a 16 MiB device fits only because block volumes have no filesystem overhead.
      const image = dir.join('twelve.qcow2');
      run('qemu-img', ['create', '-f', 'qcow2', image, '12M']);
      run('qemu-io', ['-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 11M 512k', image]);
      const s = await server({ DESTINATION: device, FILESYSTEM_OVERHEAD: '0.5' });
      // Too large for the device: refused before writing, and the device is let go at once, so
      // the retry is not told that the device is in use.
      const tooLarge = dir.join('too-large.qcow2');
      run('qemu-img', ['create', '-f', 'qcow2', tooLarge, '32M']);
      const refused = await post(s, '/v1beta1/upload', binary(tooLarge));
      assert.equal(refused.status, 400, refused.body);
      const res = await post(s, '/v1beta1/upload', binary(image));
      assert.equal(res.status, 200, res.body);
      assert.equal(await s.exited, 0, s.stderr());
      assert.equal(JSON.parse(s.terminationMessage()).message, 'Upload Complete');
      const written = sh(`head -c ${12 * MiB} ${device} | sha256sum`).split(' ')[0];
      assert.equal(written, await qemuRawSha256(image, dir.path));
      // Nothing past the image is touched (the device keeps its old pattern there).
      assert.equal(sh(`tail -c ${4 * MiB} ${device} | tr -d '\\253' | wc -c`).trim(), '0');
    } finally {
      run('losetup', ['-d', device]);
    }
  });

  test('a CLIENT_CERT_FILE without a certificate: the server refuses to start, naming the file', async () => {
    const notPem = dir.join('not-a-ca.txt');
    writeFileSync(notPem, 'subjectAltName = DNS:example\n');
    await assert.rejects(startUploadServer(certs, { CLIENT_CERT_FILE: notPem }), /upload server exited 1: .*CLIENT_CERT_FILE \S*not-a-ca\.txt holds no PEM certificate/);
    await assert.rejects(startUploadServer(certs, { CLIENT_CERT_FILE: dir.join('missing.crt') }), /cannot read CLIENT_CERT_FILE \S*missing\.crt: no such file or directory/);
  });

  test('SIGTERM while waiting: exit 1 with one line saying so', async () => {
    const s = await server();
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 1, s.stderr());
    assert.equal(s.terminationMessage(), 'upload server stopped: received SIGTERM');
  });

  test('DEADLINE passes before any upload: termination message and exit 0', async () => {
    const deadline = new Date(Date.now() + 2500).toISOString().replace(/\.\d+Z$/, 'Z');
    const s = await server({ DEADLINE: deadline });
    assert.equal(await s.exited, 0, s.stderr());
    assert.deepEqual(JSON.parse(s.terminationMessage()), { deadlinePassed: true, message: 'Deadline Passed' });
  });

  test('DEADLINE passes during an upload: the upload stops, no partial disk is left', async () => {
    const deadline = new Date(Date.now() + 4000).toISOString().replace(/\.\d+Z$/, 'Z');
    const s = await server({ DEADLINE: deadline });
    // 6 MiB at 1 MiB/s: still uploading when the deadline comes.
    const slow = await post(s, '/v1beta1/upload', ['--limit-rate', '1M', ...binary(dir.join('disk.raw'))]);
    assert.match(s.stderr(), /Upload started/);
    assert.notEqual(slow.status, 200, 'the upload cannot complete after the deadline');
    assert.equal(await s.exited, 0, s.stderr());
    assert.deepEqual(JSON.parse(s.terminationMessage()), { deadlinePassed: true, message: 'Deadline Passed' });
    assert.equal(existsSync(s.destination), false);
  });
});
