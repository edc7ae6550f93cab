/**
 * A SIGTERM while the launcher loads the bundle (before main() has run): Node's default would kill
 * the pod with no termination message. bin/cdi-importer holds it, and pod mode reports it.
 * Runs the real launcher over a bundle made from src/ by esbuild, as `npm run build` makes it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../support/cli.js';
import { buildLauncher } from '../support/launcher.js';
import { makeTempDir, type TempDir } from '../support/tools.js';
import { makePodRoot, type PodRoot } from './pod-harness.js';

let dir: TempDir;
let root: PodRoot;
let launcher: string;
before(async () => {
  dir = makeTempDir('cdi-early-signal-');
  launcher = await buildLauncher(dir.path);
  root = makePodRoot();
});
after(() => {
  root?.remove();
  dir?.remove();
});

test('SIGTERM while the bundle loads: pod mode still exits 1 with its termination message', () => {
  const result = spawnSync(process.execPath, ['-r', path.join(repoRoot, 'test', 'pod', 'fixtures', 'signal-while-loading.cjs'), launcher], {
    env: { PATH: process.env.PATH, CDI_IMPORTER_ROOT: root.path, CDI_IMPORTER_METRICS_PORT: '0', IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '1Mi' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(result.signal, null, `killed by ${result.signal}: ${result.stderr}`);
  assert.equal(result.status, 1, result.stderr);
  assert.match(readFileSync(root.terminationLog, 'utf8'), /import cancelled: received SIGTERM/);
});
