/**
 * Pod mode end to end: the real binary, CDI's environment, the pod's paths under a temp root,
 * images served by nginx. Each outcome is checked by exit code and termination message
 * (SPEC §4.3); disk contents against qemu-img's conversion.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { startNginx, type NginxServer } from '../support/nginx.js';
import { allocatedBytes, makeTempDir, qemuRawSha256, run, sh, sha256File, type TempDir } from '../support/tools.js';
import { makePodRoot, runPod, startPod, type PodRoot } from './pod-harness.js';
import { freePort } from '../support/free-port.js';
import { qemuImg, qemuIo, xzCompress } from '../qcow2/images.js';
import { moveL2TableToEnd } from '../qcow2/patch.js';

const MiB = 1 << 20;

describe('pod mode', () => {
  let images: TempDir;
  let nginx: NginxServer;
  const roots: PodRoot[] = [];
  const podRoot = (options?: { scratch?: boolean }) => {
    const root = makePodRoot(options);
    roots.push(root);
    return root;
  };

  before(async () => {
    images = makeTempDir('cdi-pod-images-');
    makeDiskLikeImage(images.join('raw.img'), 8 * MiB);
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', images.join('raw.img'), images.join('disk.qcow2')]);
    sh(`xz -T1 -3 -k -c ${images.join('disk.qcow2')} > ${images.join('disk.qcow2.xz')}`);
    mkdirSync(images.join('tree', 'etc'), { recursive: true });
    writeFileSync(images.join('tree', 'etc', 'motd'), 'hello from the archive\n');
    writeFileSync(images.join('tree', 'data.bin'), Buffer.alloc(100_000, 7));
    run('tar', ['-cf', images.join('archive.tar'), '-C', images.join('tree'), '.']);
    // Out of order (the qcow2 tests' recipe): an L2 table moved after the data it maps, then
    // xz-compressed so the importer can only stream it, never seek.
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', images.join('moved-l2.qcow2'), '12M');
    qemuIo(images.join('moved-l2.qcow2'), 'write -P 0x5a 0 2M', 'write -P 0x5b 6M 3M');
    moveL2TableToEnd(images.join('moved-l2.qcow2'), 0);
    xzCompress(images.join('moved-l2.qcow2'));
    nginx = await startNginx({ root: images.path });
  });

  after(async () => {
    await nginx?.stop();
    images?.remove();
    for (const root of roots) root.remove();
  });

  const http = (env: Record<string, string>) => ({ IMPORTER_SOURCE: 'http', PREALLOCATION: 'false', ...env });

  test('http raw: disk.img is qemu-img identical, grown to the requested size, success message', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_IMAGE_SIZE: '16Mi', FILESYSTEM_OVERHEAD: '0' }));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.message, '{"message":"Import Complete","preallocationApplied":false}');
    assert.equal(statSync(root.diskImage).size, 16 * MiB);
    assert.equal(statSync(root.diskImage).mode & 0o777, 0o660);
    assert.equal(await sha256File(root.diskImage), await qemuRawSha256(images.join('raw.img'), images.path, 16 * MiB));
  });

  test('http raw with the default filesystem overhead: usable space is roundDown(ceil(64Mi / 1.06), 1Mi)', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_IMAGE_SIZE: '64Mi' }));
    assert.equal(result.code, 0, result.stderr);
    const usable = Math.floor(Math.ceil((64 * MiB) / 1.06) / MiB) * MiB;
    assert.equal(statSync(root.diskImage).size, usable);
    assert.equal(await sha256File(root.diskImage), await qemuRawSha256(images.join('raw.img'), images.path, usable));
  });

  test('http qcow2.xz: converted in one pass, identical to qemu-img', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}disk.qcow2.xz`, IMPORTER_IMAGE_SIZE: '16Mi', FILESYSTEM_OVERHEAD: '0' }));
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.json, { message: 'Import Complete', preallocationApplied: false });
    assert.equal(await sha256File(root.diskImage), await qemuRawSha256(images.join('disk.qcow2'), images.path, 16 * MiB));
  });

  test('scratch needed and /scratch not mounted: exit 0 asking for scratch, no disk.img left', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}moved-l2.qcow2.xz`, IMPORTER_IMAGE_SIZE: '16Mi', FILESYSTEM_OVERHEAD: '0' }));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.message, '{"scratchSpaceRequired":true,"message":"Import Complete"}');
    assert.equal(existsSync(root.diskImage), false);
  });

  test('the same image with /scratch mounted (CDI\'s re-run): imported, identical to qemu-img, scratch emptied', async () => {
    const root = podRoot({ scratch: true });
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}moved-l2.qcow2.xz`, IMPORTER_IMAGE_SIZE: '16Mi', FILESYSTEM_OVERHEAD: '0' }));
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.json, { message: 'Import Complete', preallocationApplied: false });
    assert.equal(await sha256File(root.diskImage), await qemuRawSha256(images.join('moved-l2.qcow2'), images.path, 16 * MiB));
    assert.deepEqual(readdirSync(root.scratchDir), []);
  });

  test('node pull: waits for IMPORTER_READY_FILE, fetches the disk it names, touches IMPORTER_DONE_FILE', async () => {
    const root = podRoot();
    const ready = root.join('ready');
    const done = root.join('done');
    const timer = setTimeout(() => writeFileSync(ready, 'raw.img'), 1500);
    const result = await runPod(root, http({
      IMPORTER_ENDPOINT: `${nginx.http}disk.img`,
      IMPORTER_READY_FILE: ready,
      IMPORTER_DONE_FILE: done,
      FILESYSTEM_OVERHEAD: '0',
    }));
    clearTimeout(timer);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(existsSync(done), true);
    assert.equal(await sha256File(root.diskImage), await qemuRawSha256(images.join('raw.img'), images.path));
  });

  test('an import proxy (http_proxy, no no_proxy) is not used for localhost or loopback endpoints, as CDI\'s Go client has it', async () => {
    // Found by a QA pass: a node pull's disk is served on localhost, and went to the cluster's proxy.
    const closedProxy = `http://127.0.0.1:${await freePort()}`;
    const port = new URL(nginx.http).port;
    for (const host of ['localhost', '127.0.0.1']) {
      const root = podRoot();
      const result = await runPod(root, http({ IMPORTER_ENDPOINT: `http://${host}:${port}/raw.img`, FILESYSTEM_OVERHEAD: '0', http_proxy: closedProxy, HTTPS_PROXY: closedProxy }));
      assert.equal(result.code, 0, `${host}: ${result.stderr}`);
      assert.equal(await sha256File(root.diskImage), await qemuRawSha256(images.join('raw.img'), images.path));
    }
  });

  test('preallocation: the whole file is allocated and reported', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_IMAGE_SIZE: '16Mi', FILESYSTEM_OVERHEAD: '0', PREALLOCATION: 'true' }));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.message, '{"message":"Import Complete","preallocationApplied":true}');
    assert.ok(allocatedBytes(root.diskImage) >= 16 * MiB, `allocated ${allocatedBytes(root.diskImage)}`);
  });

  test('klog flags are accepted and -v=3 turns on JSON debug lines', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, FILESYSTEM_OVERHEAD: '0' }), ['-v=3', '-alsologtostderr', '--logtostderr=true']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stderr.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { level: string; msg: string });
    assert.ok(lines.some((l) => l.level === 'debug'), result.stderr);
    assert.ok(lines.some((l) => l.msg === 'Import Complete'));
  });

  test('an unknown flag is a usage error (exit 2), nothing imported', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img` }), ['-frobnicate']);
    assert.equal(result.code, 2);
    // The line every usage error prints: prefix, what, and what the pod takes.
    assert.equal(result.stderr, 'cdi-importer: error: unknown flag "-frobnicate": pod mode takes only klog flags such as -v=1\n');
    assert.equal(existsSync(root.diskImage), false);
  });

  test('checksum mismatch: exit 0, the CDI message with both digests, disk.img removed', async () => {
    const root = podRoot();
    const actual = await sha256File(images.join('raw.img'));
    const wrong = '0'.repeat(64);
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_CHECKSUM: `SHA256:${wrong}` }));
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.json, {
      message: `Unable to process data: checksum mismatch: expected sha256:${wrong}, calculated sha256:${actual}`,
    });
    assert.equal(existsSync(root.diskImage), false);
  });

  test('checksum match: success', async () => {
    const root = podRoot();
    const actual = await sha256File(images.join('raw.img'));
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_CHECKSUM: `sha256:${actual}` }));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.json?.message, 'Import Complete');
  });

  test('too small: exit 1 with the phrase the controller turns into "DataVolume too small"', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_IMAGE_SIZE: '4Mi', FILESYSTEM_OVERHEAD: '0' }));
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.message!, /^Unable to process data: virtual image size 8388608 is larger than the reported available storage 4194304\. A larger PVC is required$/);
    assert.equal(existsSync(root.diskImage), false);
  });

  test('404: exit 1, "Unable to connect to http data source", one line', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}missing.img` }));
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.message!, /^Unable to connect to http data source: expected status code 200, got 404\. Status: 404 Not Found/);
    assert.doesNotMatch(result.message!, /\n/);
    assert.equal(existsSync(root.diskImage), false);
  });

  test('PREALLOCATION that is not a boolean: exit 1', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, PREALLOCATION: 'yes' }));
    assert.equal(result.code, 1);
    assert.equal(result.message, 'the PREALLOCATION environment variable is with a wrong value "yes"; should be "true" or "false"');
    assert.equal(existsSync(root.diskImage), false);
  });

  for (const source of ['s3', 'gcs', 'imageio', 'vddk', 'ftp']) {
    test(`IMPORTER_SOURCE=${source}: exit 1, "Unknown data source: ${source}"`, async () => {
      const root = podRoot();
      const result = await runPod(root, { IMPORTER_SOURCE: source, IMPORTER_ENDPOINT: `${nginx.http}raw.img` });
      assert.equal(result.code, 1);
      assert.equal(result.message, `Unknown data source: ${source}`);
    });
  }

  test('no command and no IMPORTER_SOURCE outside Kubernetes: a usage line, exit 2, no termination message; inside it, CDI\'s "Unknown data source"', async () => {
    // Found by a QA pass: a bare `cdi-importer` run by a script went into pod mode and wrote /dev/termination-log.
    const root = podRoot();
    const outside = await runPod(root, {});
    assert.equal(outside.code, 2, outside.stderr);
    assert.equal(outside.stderr.trim(), 'cdi-importer: error: no command given, and IMPORTER_SOURCE is not set for pod mode; commands: import, convert, info, datavolume, upload-server (see cdi-importer --help)');
    assert.equal(outside.message, undefined);
    // With klog flags too, which only a pod is given (found by a QA pass).
    const flagged = await runPod(root, {}, ['-v=1']);
    assert.equal(flagged.code, 2, flagged.stderr);
    assert.match(flagged.stderr, /^cdi-importer: error: no command given, and IMPORTER_SOURCE is not set for pod mode; /);
    assert.equal(flagged.message, undefined);
    const inside = await runPod(podRoot(), { KUBERNETES_SERVICE_HOST: '10.96.0.1' });
    assert.equal(inside.code, 1, inside.stderr);
    assert.equal(inside.message?.trim(), 'Unknown data source:');
  });

  test('an IMPORTER_IMAGE_SIZE that is not a quantity: exit 1 naming the variable', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_IMAGE_SIZE: '10 gigs' }));
    assert.equal(result.code, 1);
    assert.match(result.message!, /^invalid IMPORTER_IMAGE_SIZE: invalid quantity "10 gigs"/);
  });

  test('archive: the tar is extracted into /data', async () => {
    const root = podRoot();
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}archive.tar`, IMPORTER_CONTENTTYPE: 'archive' }));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.json?.message, 'Import Complete');
    assert.equal(readFileSync(root.join('data', 'etc', 'motd'), 'utf8'), 'hello from the archive\n');
    assert.deepEqual(readFileSync(root.join('data', 'data.bin')), Buffer.alloc(100_000, 7));
    assert.equal(existsSync(root.diskImage), false);
  });

  test('a restart after a hard kill: what the killed attempt left in /data and /scratch is removed first, as CDI does', async () => {
    const root = podRoot({ scratch: true });
    // A SIGKILLed archive attempt: half its entries, plus a spill file in scratch and a stray file.
    mkdirSync(root.join('data', 'etc'));
    writeFileSync(root.join('data', 'etc', 'motd'), '');
    writeFileSync(root.join('data', 'stale.txt'), 'from before');
    mkdirSync(root.join('data', 'lost+found'));
    writeFileSync(root.join('scratch', 'spill-1234'), Buffer.alloc(4096, 1));
    const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}archive.tar`, IMPORTER_CONTENTTYPE: 'archive' }));
    assert.equal(result.code, 0, result.stderr);
    assert.equal(readFileSync(root.join('data', 'etc', 'motd'), 'utf8'), 'hello from the archive\n');
    assert.deepEqual(readdirSync(root.dataDir).sort(), ['data.bin', 'etc', 'lost+found'], 'the stray file is gone; lost+found is the filesystem\'s');
    assert.deepEqual(readdirSync(root.scratchDir), []);
    // And a kubevirt import: a stale partial disk.img is not what is left in its place.
    const again = podRoot();
    writeFileSync(again.diskImage, Buffer.alloc(32 * MiB, 9));
    writeFileSync(again.join('data', '.disk.img.partial-old'), 'x');
    const imported = await runPod(again, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_IMAGE_SIZE: '8Mi', FILESYSTEM_OVERHEAD: '0' }));
    assert.equal(imported.code, 0, imported.stderr);
    assert.deepEqual(readdirSync(again.dataDir), ['disk.img']);
    assert.equal(await sha256File(again.diskImage), await qemuRawSha256(images.join('raw.img'), images.path, 8 * MiB));
  });

  test('a stop while a huge leftover is being removed is acted on at once; the restart removes the rest', async () => {
    const root = podRoot();
    const files = 50_000;
    sh(`cd ${root.dataDir} && seq -f leftover-%g 1 ${files} | xargs touch`);
    const env = http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img`, IMPORTER_IMAGE_SIZE: '8Mi', FILESYSTEM_OVERHEAD: '0' });
    const pod = startPod(root, env);
    for (let i = 0; i < 600 && !pod.stderr().includes('removing what an earlier attempt left'); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    pod.child.kill('SIGTERM');
    const { code } = await pod.exited;
    assert.equal(code, 1, pod.stderr());
    assert.equal(root.terminationMessage(), 'Unable to process data: import cancelled: received SIGTERM');
    // Stopped between batches, not after the last file.
    const left = readdirSync(root.dataDir).length;
    assert.ok(left > files / 2, `${left} of ${files} leftovers remain: the removal went on after the stop`);

    const restarted = await runPod(root, env);
    assert.equal(restarted.code, 0, restarted.stderr);
    assert.deepEqual(readdirSync(root.dataDir), ['disk.img']);
  });

  test('a leftover that cannot be removed (immutable): one line naming it, exit 1, no crash', async (t) => {
    const root = podRoot();
    const stuck = root.join('data', 'stuck.img');
    writeFileSync(stuck, 'x');
    for (let i = 0; i < 200; i++) writeFileSync(root.join('data', `other-${i}`), '');
    if (spawnSync('chattr', ['+i', stuck]).status !== 0) return t.skip('chattr +i is not available on this file system');
    try {
      const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${nginx.http}raw.img` }));
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.message, `Unable to process data: cannot empty ${root.dataDir} before the import (${stuck}): permission denied`);
    } finally {
      spawnSync('chattr', ['-i', stuck]);
    }
  });

  test('blank: a sparse disk.img of the usable size, nothing allocated', async () => {
    const root = podRoot();
    const result = await runPod(root, { IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '64Mi', FILESYSTEM_OVERHEAD: '0.06', PREALLOCATION: 'false' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.message, '{"message":"Import Complete","preallocationApplied":false}');
    const usable = Math.floor(Math.ceil((64 * MiB) / 1.06) / MiB) * MiB;
    assert.equal(statSync(root.diskImage).size, usable);
    assert.equal(allocatedBytes(root.diskImage), 0);
    assert.equal(await sha256File(root.diskImage), sh(`head -c ${usable} /dev/zero | sha256sum`).split(' ')[0]);
  });

  test('blank on a volume with no usable space left: the too-small message, not a 0-byte disk called complete', async (t) => {
    const root = podRoot();
    try {
      run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', root.dataDir]);
    } catch {
      return t.skip('cannot mount a tmpfs here');
    }
    try {
      // The file system's own lost+found fills it: emptying /data before the import keeps that.
      mkdirSync(root.join('data', 'lost+found'));
      sh(`head -c ${MiB} /dev/zero > ${root.join('data', 'lost+found', 'filler')} || true`);
      const result = await runPod(root, { IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '64Mi', PREALLOCATION: 'false' });
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.message ?? '', /virtual image size 67108864 is larger than the reported available storage 0\. A larger PVC is required/);
      assert.equal(existsSync(root.diskImage), false);
    } finally {
      run('umount', [root.dataDir]);
    }
  });

  test('blank of size 0: says a 0-byte disk was asked for, not that 0 is larger than 0', async () => {
    const root = podRoot();
    const result = await runPod(root, { IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '0', FILESYSTEM_OVERHEAD: '0', PREALLOCATION: 'false' });
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.message, 'a blank disk of 0 bytes was asked for: give the requested volume size (--size or IMPORTER_IMAGE_SIZE) greater than 0');
    assert.equal(existsSync(root.diskImage), false);
  });

  test('blank with preallocation: allocated and reported', async () => {
    const root = podRoot();
    const result = await runPod(root, { IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '8Mi', FILESYSTEM_OVERHEAD: '0', PREALLOCATION: 'true' });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.json, { message: 'Import Complete', preallocationApplied: true });
    assert.equal(statSync(root.diskImage).size, 8 * MiB);
    assert.ok(allocatedBytes(root.diskImage) >= 8 * MiB);
  });

  test('blank with content type archive: exit 1, CDI\'s message', async () => {
    const root = podRoot();
    const result = await runPod(root, { IMPORTER_SOURCE: 'none', IMPORTER_CONTENTTYPE: 'archive', IMPORTER_IMAGE_SIZE: '8Mi' });
    assert.equal(result.code, 1);
    assert.equal(result.message, 'Cannot create empty disk with content type archive');
    assert.deepEqual(readdirSync(root.dataDir), []);
  });

  test('extra headers from IMPORTER_EXTRA_HEADER_* and /extraheaders/<secret>/<key> reach the server', async () => {
    const { startFaultServer } = await import('../support/fault-server.js');
    const server = await startFaultServer(readFileSync(images.join('raw.img')));
    try {
      const fromEnv = podRoot();
      let result = await runPod(fromEnv, http({ IMPORTER_ENDPOINT: `${server.url}ok`, IMPORTER_EXTRA_HEADER_0: 'X-Test: from-env' }));
      assert.equal(result.code, 0, result.stderr);
      assert.ok(server.requests.some((r) => r.xTest === 'from-env'));

      const fromSecret = podRoot();
      mkdirSync(fromSecret.join('extraheaders', 'secret1', '..data'), { recursive: true });
      writeFileSync(fromSecret.join('extraheaders', 'secret1', 'header'), 'X-Test: from-secret');
      writeFileSync(fromSecret.join('extraheaders', 'secret1', '..data', 'ignored'), 'X-Test: from-dotdir');
      result = await runPod(fromSecret, http({ IMPORTER_ENDPOINT: `${server.url}ok` }));
      assert.equal(result.code, 0, result.stderr);
      assert.ok(server.requests.some((r) => r.xTest === 'from-secret'));
      assert.ok(!server.requests.some((r) => r.xTest === 'from-dotdir'));
    } finally {
      await server.stop();
    }
  });

  test('extra headers as CDI sends them: the user\'s User-Agent wins, a name given twice sends both values', async () => {
    const { startFaultServer } = await import('../support/fault-server.js');
    const server = await startFaultServer(readFileSync(images.join('raw.img')));
    try {
      const root = podRoot();
      const result = await runPod(
        root,
        http({ IMPORTER_ENDPOINT: `${server.url}ok`, IMPORTER_EXTRA_HEADER_0: 'User-Agent: custom-agent/1.0', IMPORTER_EXTRA_HEADER_1: 'X-Test: one', IMPORTER_EXTRA_HEADER_2: 'X-Test: two' }),
      );
      assert.equal(result.code, 0, result.stderr);
      assert.ok(server.requests.length > 0);
      for (const request of server.requests) {
        assert.equal(request.userAgent, 'custom-agent/1.0');
        assert.equal(request.xTest, 'one, two');
      }
    } finally {
      await server.stop();
    }
  });

  test('an extra header that is not "Name: value" is left out, as CDI leaves it, and its value (maybe a secret) shown nowhere', async () => {
    const { startFaultServer } = await import('../support/fault-server.js');
    const server = await startFaultServer(readFileSync(images.join('raw.img')));
    try {
      const root = podRoot();
      mkdirSync(root.join('extraheaders', 'token-secret'), { recursive: true });
      writeFileSync(root.join('extraheaders', 'token-secret', 'token'), 'sometoken123');
      writeFileSync(root.join('extraheaders', 'token-secret', 'good'), 'X-Test: from-secret');
      const result = await runPod(root, http({ IMPORTER_ENDPOINT: `${server.url}ok`, IMPORTER_EXTRA_HEADER_0: 'tok=secretC' }));
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.json?.message, 'Import Complete');
      assert.ok(server.requests.some((r) => r.xTest === 'from-secret'), 'the well-formed header still goes');
      for (const secret of ['sometoken123', 'secretC']) {
        assert.ok(!result.stderr.includes(secret), `${secret} in the logs: ${result.stderr}`);
        assert.ok(!readFileSync(root.terminationLog, 'utf8').includes(secret));
      }
      assert.match(result.stderr, /"origin":"IMPORTER_EXTRA_HEADER_0","msg":"ignoring an extra header that is not/);
      assert.match(result.stderr, /"origin":"[^"]*extraheaders\/token-secret\/token","msg":"ignoring an extra header that is not/);
    } finally {
      await server.stop();
    }
  });
});
