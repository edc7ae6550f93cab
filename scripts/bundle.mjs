// Bundles tsc's output (dist/*.js, ES modules) into one CommonJS file, dist/cdi-importer.cjs, which
// bin/cdi-importer loads. Why: Node 20 spends ~25 ms of every run resolving and linking ~55 ES
// modules one by one; one CommonJS file loads in a few. Modules imported on demand (pod mode, HTTP,
// registries, the upload server) stay lazy: their code is in the file but runs only when imported.
// Packages stay in node_modules (native addons, undici's files loaded by path), except commander.
//
//   node scripts/bundle.mjs [DIST_DIR]     (npm run build runs it after tsc)
import { build } from 'esbuild';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
// commander is bundled (its five files load with ours); every other package stays in node_modules.
const external = Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies }).filter((name) => name !== 'commander');

/**
 * commander requires node:child_process at load, for subcommands that are separate programs (we
 * have none); loading it costs every run ~4 ms. In the bundle, commander gets a stand-in that
 * loads the real module on first use.
 */
const lazyChildProcessForCommander = {
  name: 'lazy-child-process-for-commander',
  setup(build) {
    build.onResolve({ filter: /^node:child_process$/ }, (args) =>
      args.importer.includes(`${path.sep}commander${path.sep}`) ? { path: 'child_process', namespace: 'lazy-builtin' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, () => ({
      contents: "module.exports = new Proxy({}, { get: (_, name) => require('node:child_process')[name] });",
      loader: 'js',
    }));
  },
};

const dist = path.resolve(process.argv[2] ?? 'dist');
await build({
  entryPoints: [path.join(dist, 'main.js')],
  outfile: path.join(dist, 'cdi-importer.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external,
  // commander from this checkout's packages, wherever DIST_DIR is (the container-install test bundles outside it).
  nodePaths: [fileURLToPath(new URL('../node_modules', import.meta.url))],
  plugins: [lazyChildProcessForCommander],
  sourcemap: true,
  logLevel: 'warning',
  // createRequire(import.meta.url) resolves packages from the module's location; in CommonJS the
  // bundle's own file URL serves the same purpose.
  define: { 'import.meta.url': '__bundleFileUrl' },
  banner: { js: "const __bundleFileUrl = require('node:url').pathToFileURL(__filename).href;" },
});

// bin/cdi-importer reads the bundle as Latin-1: a one-byte string, made in a third of the time UTF-8
// decoding takes, and scanned faster by V8 (a convert of a small qcow2 2-3 ms sooner). esbuild
// already writes code as ASCII (charset: 'ascii' escapes the rest); comments it keeps may not be,
// so any other character left is written as a \u escape, which means the same in code and is
// harmless in a comment.
const bundleFile = path.join(dist, 'cdi-importer.cjs');
const bundled = readFileSync(bundleFile, 'utf8');
if (/[^\x00-\x7f]/.test(bundled)) {
  writeFileSync(bundleFile, bundled.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

// The V8 code cache beside the bundle (bin/cdi-importer): written by a run of the bundle through the
// launcher, converting the demo image, so it holds the functions an import compiles as well as the
// top level. Packages resolve from this checkout (dist may be elsewhere, with none of its own yet).
const scratch = mkdtempSync(path.join(os.tmpdir(), 'cdi-importer-code-cache-'));
const root = fileURLToPath(new URL('..', import.meta.url));
const cacheRun = spawnSync(
  process.execPath,
  [path.join(root, 'bin', 'cdi-importer'), 'convert', path.join(root, 'fixtures', 'demo.qcow2.xz'), path.join(scratch, 'demo.raw'), '--quiet'],
  {
    env: { ...process.env, CDI_IMPORTER_WRITE_CODE_CACHE: path.join(dist, 'cdi-importer.cjs'), NODE_PATH: path.join(root, 'node_modules') },
    encoding: 'utf8',
  },
);
rmSync(scratch, { recursive: true, force: true });
if (cacheRun.status !== 0) {
  console.error(`bundle.mjs: writing the code cache failed (the bundle works without it, but starts slower):\n${cacheRun.stderr}`);
  process.exit(1);
}
