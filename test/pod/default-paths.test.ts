/**
 * Pod mode at CDI's real paths (no CDI_IMPORTER_ROOT): inside a private mount namespace
 * (`unshare -m`), temp directories are bind-mounted over /data and /scratch and a temp file over
 * /dev/termination-log, as the kubelet mounts them in an importer pod. The host's mount table
 * is never touched; mount points that did not exist are created for the run and removed after.
 * The whole run holds a lock file, so concurrent test runs take turns.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mainScript, repoRoot } from '../support/cli.js';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { startNginx, type NginxServer } from '../support/nginx.js';
import { makeTempDir, qemuRawSha256, sha256File, type TempDir } from '../support/tools.js';

const MiB = 1 << 20;

function whyNotUnshare(): string | undefined {
  if (existsSync('/dev/cdi-block-volume')) return 'this host has a /dev/cdi-block-volume, so pod mode would run in block mode';
  if (spawnSync('flock', ['--version']).error) return 'flock (util-linux) is not available';
  const probe = spawnSync('unshare', ['-m', '--propagation', 'private', 'true'], { encoding: 'utf8' });
  if (probe.error) return `unshare is not available: ${probe.error.message}`;
  if (probe.status !== 0) return `unshare -m is not permitted here: ${probe.stderr.trim()}`;
  return undefined;
}

const skipReason = whyNotUnshare();
if (skipReason) console.log(`# skipping the default-paths test: ${skipReason}`);

describe('pod mode at the default paths (/data, /scratch, /dev/termination-log)', { skip: skipReason ?? false }, () => {
  let work: TempDir;
  let nginx: NginxServer;

  before(async () => {
    work = makeTempDir('cdi-pod-default-');
    mkdirSync(work.join('images'));
    mkdirSync(work.join('data'));
    mkdirSync(work.join('scratch'));
    writeFileSync(work.join('termination-log'), '');
    makeDiskLikeImage(work.join('images', 'raw.img'), 4 * MiB);
    nginx = await startNginx({ root: work.join('images') });
  });

  after(async () => {
    await nginx?.stop();
    work?.remove();
  });

  test('the import lands in /data/disk.img and the message in /dev/termination-log', async () => {
    // Bind mounts need existing mount points. Missing ones are made for the run and removed after,
    // all under a lock so that two test runs at once never remove each other's mount points.
    const script = [
      'set -e',
      'created=()',
      'for dir in /data /scratch; do [ -e "$dir" ] || { mkdir "$dir"; created+=("$dir"); }; done',
      '[ -e /dev/termination-log ] || { : > /dev/termination-log; created+=(/dev/termination-log); }',
      'cleanup() { for p in "${created[@]}"; do if [ -d "$p" ]; then rmdir "$p"; else rm -f "$p"; fi; done; }',
      'trap cleanup EXIT',
      'unshare -m --propagation private bash -c "$POD_SCRIPT"',
      // Still on the host: its mount points stayed empty, everything went through the bind mounts.
      '[ ! -e /data/disk.img ] || { echo "host /data/disk.img was written" >&2; exit 3; }',
    ].join('\n');
    const podScript = [
      'set -e',
      `mount --bind ${work.join('data')} /data`,
      `mount --bind ${work.join('scratch')} /scratch`,
      `mount --bind ${work.join('termination-log')} /dev/termination-log`,
      `exec "${process.execPath}" --import tsx "${mainScript}" -v=1`,
    ].join('\n');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      POD_SCRIPT: podScript,
      IMPORTER_SOURCE: 'http',
      IMPORTER_ENDPOINT: `${nginx.http}raw.img`,
      IMPORTER_IMAGE_SIZE: '8Mi',
      FILESYSTEM_OVERHEAD: '0',
      PREALLOCATION: 'false',
      CDI_IMPORTER_METRICS_PORT: '0',
    };
    // Outside Kubernetes (no KUBERNETES_SERVICE_HOST) pod mode started by hand does not empty /data first.
    writeFileSync(work.join('data', 'someone-elses.txt'), 'keep me');
    const result = spawnSync('flock', [path.join(tmpdir(), 'cdi-importer-default-paths.lock'), 'bash', '-c', script], {
      cwd: repoRoot,
      env,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(result.status, 0, `${result.stderr}`);
    assert.equal(readFileSync(work.join('termination-log'), 'utf8'), '{"message":"Import Complete","preallocationApplied":false}');
    const disk = work.join('data', 'disk.img');
    assert.equal(statSync(disk).size, 8 * MiB);
    assert.equal(await sha256File(disk), await qemuRawSha256(work.join('images', 'raw.img'), work.path, 8 * MiB));
    assert.match(result.stderr, /"root":"\/"/);
    assert.equal(readFileSync(work.join('data', 'someone-elses.txt'), 'utf8'), 'keep me');
  });
});
