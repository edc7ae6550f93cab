/**
 * A SIGTERM while the launcher loads the bundle (before main() has run): Node's default would kill
 * the pod with no termination message. bin/cdi-importer holds it, and pod mode reports it.
 * Runs the real launcher over a bundle made from src/ by esbuild, as `npm run build` makes it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { repoRoot } from '../support/cli.js';
import { makeTempDir, type TempDir } from '../support/tools.js';
import { makePodRoot, type PodRoot } from './pod-harness.js';

let dir: TempDir;
let root: PodRoot;
before(async () => {
  dir = makeTempDir('cdi-early-signal-');
  mkdirSync(dir.join('bin'));
  mkdirSync(dir.join('dist'));
  copyFileSync(path.join(repoRoot, 'bin', 'cdi-importer'), dir.join('bin', 'cdi-importer'));
  copyFileSync(path.join(repoRoot, 'bin', 'package.json'), dir.join('bin', 'package.json'));
  symlinkSync(path.join(repoRoot, 'node_modules'), dir.join('node_modules'));
  await build({
    entryPoints: [path.join(repoRoot, 'src', 'main.ts')],
    outfile: dir.join('dist', 'cdi-importer.cjs'),
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
    define: { 'import.meta.url': '__bundleFileUrl' },
    banner: { js: "const __bundleFileUrl = require('node:url').pathToFileURL(__filename).href;" },
  });
  root = makePodRoot();
});
after(() => {
  root?.remove();
  dir?.remove();
});

test('SIGTERM while the bundle loads: pod mode still exits 1 with its termination message', () => {
  const result = spawnSync(process.execPath, ['-r', path.join(repoRoot, 'test', 'pod', 'fixtures', 'signal-while-loading.cjs'), dir.join('bin', 'cdi-importer')], {
    env: { PATH: process.env.PATH, CDI_IMPORTER_ROOT: root.path, CDI_IMPORTER_METRICS_PORT: '0', IMPORTER_SOURCE: 'none', IMPORTER_IMAGE_SIZE: '1Mi' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(result.signal, null, `killed by ${result.signal}: ${result.stderr}`);
  assert.equal(result.status, 1, result.stderr);
  assert.match(readFileSync(root.terminationLog, 'utf8'), /import cancelled: received SIGTERM/);
});
