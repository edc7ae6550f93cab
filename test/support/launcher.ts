/**
 * The real launcher (bin/cdi-importer) over a bundle made from src/ by esbuild, as `npm run build`
 * makes it (without the code cache): for tests of what happens before main() runs.
 */
import { copyFileSync, mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { repoRoot } from './cli.js';

/** Makes DIR/bin/cdi-importer and DIR/dist/cdi-importer.cjs (packages from this checkout); returns the launcher's path. */
export async function buildLauncher(dir: string): Promise<string> {
  mkdirSync(path.join(dir, 'bin'));
  mkdirSync(path.join(dir, 'dist'));
  copyFileSync(path.join(repoRoot, 'bin', 'cdi-importer'), path.join(dir, 'bin', 'cdi-importer'));
  copyFileSync(path.join(repoRoot, 'bin', 'package.json'), path.join(dir, 'bin', 'package.json'));
  symlinkSync(path.join(repoRoot, 'node_modules'), path.join(dir, 'node_modules'));
  await build({
    entryPoints: [path.join(repoRoot, 'src', 'main.ts')],
    outfile: path.join(dir, 'dist', 'cdi-importer.cjs'),
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
    define: { 'import.meta.url': '__bundleFileUrl' },
    banner: { js: "const __bundleFileUrl = require('node:url').pathToFileURL(__filename).href;" },
  });
  return path.join(dir, 'bin', 'cdi-importer');
}
