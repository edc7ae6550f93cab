// Bundles tsc's output (dist/*.js, ES modules) into one CommonJS file, dist/cdi-importer.cjs, which
// bin/cdi-importer loads. Why: Node 20 spends ~25 ms of every run resolving and linking ~55 ES
// modules one by one; one CommonJS file loads in a few. Modules imported on demand (pod mode, HTTP,
// registries, the upload server) stay lazy: their code is in the file but runs only when imported.
// Packages stay in node_modules (native addons, undici's files loaded by path).
//
//   node scripts/bundle.mjs [DIST_DIR]     (npm run build runs it after tsc)
import { build } from 'esbuild';
import path from 'node:path';

const dist = path.resolve(process.argv[2] ?? 'dist');
await build({
  entryPoints: [path.join(dist, 'main.js')],
  outfile: path.join(dist, 'cdi-importer.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
  // createRequire(import.meta.url) resolves packages from the module's location; in CommonJS the
  // bundle's own file URL serves the same purpose.
  define: { 'import.meta.url': '__bundleFileUrl' },
  banner: { js: "const __bundleFileUrl = require('node:url').pathToFileURL(__filename).href;" },
});
