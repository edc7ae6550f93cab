/**
 * The container image's install, without a Docker engine: the Dockerfile's steps in a clean
 * directory (the bundle alone in dist, `npm ci --omit=dev` from the lockfile, package.json and bin), then the
 * binary run from there as uid 107, CDI's importer user: --help, imports through both native
 * decompressors, imports over HTTP, and pod mode.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { repoRoot } from './support/cli.js';
import { makeDiskLikeImage } from './support/disk-images.js';
import { makeTempDir, qemuRawSha256, sh, sha256File, type TempDir } from './support/tools.js';
import { startNginx } from './support/nginx.js';

const MiB = 1 << 20;
const IMPORTER_UID = 107;
const asImporter = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;

describe('the container image install (Dockerfile steps)', { timeout: 600_000 }, () => {
  let work: TempDir;
  let app: string;

  /** Runs the installed binary as the image would: NODE_ENV=production, uid 107 when we can. */
  function binary(args: string[], env: Record<string, string> = {}) {
    const command = asImporter
      ? ['setpriv', `--reuid=${IMPORTER_UID}`, `--regid=${IMPORTER_UID}`, '--clear-groups', process.execPath, path.join(app, 'bin', 'cdi-importer'), ...args]
      : [process.execPath, path.join(app, 'bin', 'cdi-importer'), ...args];
    return spawnSync(command[0]!, command.slice(1), {
      cwd: work.path,
      env: { PATH: process.env.PATH, HOME: work.path, NODE_ENV: 'production', ...env },
      encoding: 'utf8',
      timeout: 120_000,
    });
  }

  /** A directory the importer user may write. */
  function writableDir(name: string): string {
    const dir = work.join(name);
    mkdirSync(dir, { recursive: true });
    if (asImporter) chownSync(dir, IMPORTER_UID, IMPORTER_UID);
    return dir;
  }

  before(() => {
    work = makeTempDir('cdi-docker-');
    chmodSync(work.path, 0o755);
    app = work.join('app');
    mkdirSync(app);
    for (const file of ['package.json', 'package-lock.json']) cpSync(path.join(repoRoot, file), path.join(app, file));
    cpSync(path.join(repoRoot, 'bin'), path.join(app, 'bin'), { recursive: true });
    cpSync(path.join(repoRoot, 'native'), path.join(app, 'native'), { recursive: true, filter: (source) => !source.includes(`${path.sep}build`) });

    // The build stage: tsc, then the bundle. Emitted even if a file elsewhere in the tree is mid-edit; the image build itself is strict.
    const tsc = spawnSync(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json', '--outDir', path.join(app, 'dist')], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    if (tsc.status !== 0) console.log(`# tsc reported errors (dist emitted anyway):\n${tsc.stdout.replace(/^/gm, '#   ')}`);
    assert.ok(existsSync(path.join(app, 'dist', 'main.js')), 'tsc emitted no dist/main.js');
    const bundle = spawnSync(process.execPath, [path.join(repoRoot, 'scripts', 'bundle.mjs'), path.join(app, 'dist')], { cwd: repoRoot, encoding: 'utf8' });
    assert.equal(bundle.status, 0, bundle.stderr);
    // The runtime stage copies the bundle only: every test below then proves it is the whole program.
    for (const entry of readdirSync(path.join(app, 'dist'))) {
      if (!['cdi-importer.cjs', 'cdi-importer.cjs.map', 'cdi-importer.code-cache'].includes(entry)) rmSync(path.join(app, 'dist', entry), { recursive: true });
    }

    // The production-deps stage: the lockfile, production dependencies only, native modules built.
    let install = spawnSync('npm', ['ci', '--omit=dev', '--offline', '--no-audit', '--no-fund'], { cwd: app, encoding: 'utf8' });
    if (install.status !== 0 && /ENOTCACHED/.test(install.stderr)) {
      console.log('# the npm cache lacks some package metadata: installing with --prefer-offline');
      install = spawnSync('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app, encoding: 'utf8' });
    }
    assert.equal(install.status, 0, install.stderr);
    sh(`chmod -R a+rX ${app}`);
  });

  after(() => work?.remove());

  test('the Dockerfile does what this test does', () => {
    const dockerfile = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /^FROM \$\{NODE_IMAGE\}$/m);
    assert.match(dockerfile, /ARG NODE_IMAGE=node:20-bookworm-slim/);
    assert.match(dockerfile, /RUN npm ci --omit=dev/);
    assert.match(dockerfile, /RUN npm run build/);
    assert.match(JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).scripts.build, /^rm -rf dist && tsc -p tsconfig\.json && node scripts\/bundle\.mjs$/);
    assert.match(dockerfile, /^COPY --from=build \/src\/dist\/cdi-importer\.cjs \/src\/dist\/cdi-importer\.cjs\.map \/src\/dist\/cdi-importer\.code-cache \.\/dist\/$/m);
    assert.match(dockerfile, /^COPY bin \.\/bin\nCOPY fixtures \.\/fixtures\nRUN npm run build$/m, 'the build stage has what the code cache run needs');
    assert.match(dockerfile, /liblzma-dev/);
    assert.match(dockerfile, /liblzma5 util-linux/);
    assert.match(dockerfile, /^COPY native \.\/native\n/m, 'npm ci builds native/file-copy: its source must be there');
    assert.match(dockerfile, /^COPY --from=production-deps \/src\/native\/file-copy\/build\/Release\/file_copy\.node \.\/native\/file-copy\/build\/Release\/$/m, 'node_modules links to native/file-copy');
    assert.match(dockerfile, /^USER 107:107$/m);
    assert.match(dockerfile, /^ENTRYPOINT \["\/app\/bin\/cdi-importer"\]$/m);
  });

  test('production dependencies only, native modules built', () => {
    // (@types/node is not checked: zstd-napi lists it as one of its own dependencies.)
    for (const dev of ['typescript', 'tsx', 'esbuild', '@types/tar-stream']) {
      assert.equal(existsSync(path.join(app, 'node_modules', dev)), false, `${dev} is a dev dependency but was installed`);
    }
    for (const dep of ['commander', 'pino', 'undici', 'yaml', 'tar-stream', 'node-liblzma', 'zstd-napi', 'cdi-importer-file-copy']) {
      assert.ok(existsSync(path.join(app, 'node_modules', dep, 'package.json')), `${dep} missing`);
    }
    assert.ok(existsSync(path.join(app, 'node_modules', 'cdi-importer-file-copy', 'build', 'Release', 'file_copy.node')), 'the native copy was not built');
  });

  test('--help lists the commands, and the bundle starts from its V8 code cache', () => {
    const result = binary(['--help'], { NODE_DEBUG: 'cdi-importer' });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /code cache used/);
    for (const command of ['import', 'convert', 'datavolume']) assert.match(result.stdout, new RegExp(`\\b${command}\\b`));
  });

  test("run through a symlink, as npm's global bin links it, also with node --preserve-symlinks-main", () => {
    const bin = work.join('global-bin');
    mkdirSync(bin, { recursive: true });
    const link = path.join(bin, 'cdi-importer');
    rmSync(link, { force: true });
    symlinkSync(path.join(app, 'bin', 'cdi-importer'), link);
    for (const nodeFlags of [[], ['--preserve-symlinks-main']]) {
      const result = spawnSync(process.execPath, [...nodeFlags, link, '--version'], {
        cwd: work.path,
        env: { PATH: process.env.PATH, HOME: work.path, NODE_DEBUG: 'cdi-importer' },
        encoding: 'utf8',
      });
      assert.equal(result.status, 0, `${nodeFlags.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout.trim(), JSON.parse(readFileSync(path.join(app, 'package.json'), 'utf8')).version);
      assert.match(result.stderr, /code cache used/, nodeFlags.join(' '));
    }
  });

  test('imports raw.xz and raw.zst (both native decompressors) byte-identical to qemu-img', async () => {
    const images = work.join('images');
    mkdirSync(images);
    makeDiskLikeImage(path.join(images, 'raw.img'), 4 * MiB);
    sh(`xz -T1 -3 -k ${path.join(images, 'raw.img')} && zstd -q -3 ${path.join(images, 'raw.img')} -o ${path.join(images, 'raw.img.zst')}`);
    sh(`chmod -R a+rX ${images}`);
    const out = writableDir('out');
    const expected = await qemuRawSha256(path.join(images, 'raw.img'), work.path, 16 * MiB);
    for (const input of ['raw.img.xz', 'raw.img.zst']) {
      const dest = path.join(out, `${input}.img`);
      const result = binary(['import', path.join(images, input), dest, '--size', '16Mi', '--filesystem-overhead', '0', '--quiet']);
      assert.equal(result.status, 0, result.stderr);
      assert.equal(await sha256File(dest), expected, input);
    }
  });

  test('converts a qcow2.xz in one pass and extracts a tar archive', async () => {
    const images = work.join('one-pass-images');
    mkdirSync(images);
    const raw = path.join(images, 'disk.raw');
    makeDiskLikeImage(raw, 5 * MiB);
    sh(`qemu-img convert -q -f raw -O qcow2 -c ${raw} ${path.join(images, 'disk.qcow2')} && xz -T1 -k ${path.join(images, 'disk.qcow2')}`);
    sh(`mkdir -p ${images}/tree/sub && echo hello > ${images}/tree/sub/file.txt && tar -C ${images}/tree -cf ${images}/tree.tar .`);
    sh(`chmod -R a+rX ${images}`);
    const out = writableDir('one-pass-out');
    const converted = binary(['convert', path.join(images, 'disk.qcow2.xz'), path.join(out, 'disk.img'), '--quiet']);
    assert.equal(converted.status, 0, converted.stderr);
    assert.equal(await sha256File(path.join(out, 'disk.img')), await qemuRawSha256(raw, work.path));
    const extracted = binary(['import', path.join(images, 'tree.tar'), '--content-type', 'archive', '-o', out, '--quiet']);
    assert.equal(extracted.status, 0, extracted.stderr);
    assert.equal(readFileSync(path.join(out, 'sub', 'file.txt'), 'utf8'), 'hello\n');
  });

  test('converts a local qcow2 through the native copy between files', async () => {
    const images = work.join('native-copy-images');
    mkdirSync(images);
    const raw = path.join(images, 'disk.raw');
    makeDiskLikeImage(raw, 6 * MiB);
    sh(`qemu-img convert -q -f raw -O qcow2 ${raw} ${path.join(images, 'disk.qcow2')} && chmod -R a+rX ${images}`);
    const out = writableDir('native-copy-out');
    const result = binary(['convert', path.join(images, 'disk.qcow2'), path.join(out, 'disk.img'), '--quiet'], { NODE_DEBUG: 'cdi-importer' });
    assert.equal(result.status, 0, result.stderr);
    assert.ok(Number(/(\d+) bytes copied from the source file by the native copy/.exec(result.stderr)?.[1]) > 0, result.stderr);
    assert.equal(await sha256File(path.join(out, 'disk.img')), await qemuRawSha256(raw, work.path));
  });

  test('a damaged code cache, or one from another build, is not used: the import runs as without one', async () => {
    // A copy of the install (the other tests use the original): bin, the bundle and its cache, the packages.
    const copy = work.join('app-copy');
    mkdirSync(copy);
    cpSync(path.join(app, 'bin'), path.join(copy, 'bin'), { recursive: true });
    cpSync(path.join(app, 'dist'), path.join(copy, 'dist'), { recursive: true });
    symlinkSync(path.join(app, 'node_modules'), path.join(copy, 'node_modules'));
    const cacheFile = path.join(copy, 'dist', 'cdi-importer.code-cache');
    const bundleFile = path.join(copy, 'dist', 'cdi-importer.cjs');
    const raw = work.join('cache-disk.raw');
    makeDiskLikeImage(raw, 3 * MiB);
    sh(`qemu-img convert -q -f raw -O qcow2 ${raw} ${raw}.qcow2`);
    const expected = await qemuRawSha256(raw, work.path);
    const convert = (name: string) => {
      const out = work.join(name);
      const result = spawnSync(process.execPath, [path.join(copy, 'bin', 'cdi-importer'), 'convert', `${raw}.qcow2`, out, '--quiet'], {
        env: { PATH: process.env.PATH, NODE_DEBUG: 'cdi-importer' },
        encoding: 'utf8',
      });
      assert.equal(result.status, 0, result.stderr);
      return { stderr: result.stderr, out };
    };
    const intact = convert('cache-intact.img');
    assert.match(intact.stderr, /code cache used/);
    assert.equal(await sha256File(intact.out), expected);

    // One flipped bit in V8's data: given to V8, it would crash the process (V8 does not check).
    const cache = readFileSync(cacheFile);
    cache[cache.length >> 1] ^= 1;
    writeFileSync(cacheFile, cache);
    const damaged = convert('cache-damaged.img');
    assert.match(damaged.stderr, /code cache absent, damaged or made for another build/);
    assert.equal(await sha256File(damaged.out), expected);

    // An intact cache beside a bundle edited in place to the same length (the only thing V8 itself
    // compares): the edited code runs, not the cached one.
    cache[cache.length >> 1] ^= 1;
    writeFileSync(cacheFile, cache);
    const bundle = readFileSync(bundleFile, 'utf8');
    const version = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version as string;
    const edited = version.replace(/\d$/, (digit) => String((Number(digit) + 1) % 10));
    assert.ok(bundle.includes(`"${version}"`), 'the bundle holds the version string');
    writeFileSync(bundleFile, bundle.replaceAll(`"${version}"`, `"${edited}"`));
    const printed = spawnSync(process.execPath, [path.join(copy, 'bin', 'cdi-importer'), '--version'], {
      env: { PATH: process.env.PATH, NODE_DEBUG: 'cdi-importer' },
      encoding: 'utf8',
    });
    assert.equal(printed.stdout.trim(), edited, printed.stderr);
    assert.match(printed.stderr, /code cache absent, damaged or made for another build/);
    const rebuilt = convert('cache-other-build.img');
    assert.equal(await sha256File(rebuilt.out), expected);
  });

  test('imports over HTTP from nginx: qcow2 by Range requests and raw.gz as one stream', async () => {
    const images = work.join('http-images');
    mkdirSync(images);
    const raw = path.join(images, 'disk.raw');
    makeDiskLikeImage(raw, 6 * MiB);
    sh(`qemu-img convert -q -f raw -O qcow2 ${raw} ${path.join(images, 'disk.qcow2')} && gzip -k ${raw}`);
    sh(`chmod -R a+rX ${images}`);
    const expected = await qemuRawSha256(raw, work.path);
    const nginx = await startNginx({ root: images });
    try {
      const out = writableDir('http-out');
      for (const name of ['disk.qcow2', 'disk.raw.gz']) {
        const dest = path.join(out, `${name}.img`);
        const result = binary(['import', `${nginx.http}${name}`, dest, '--filesystem-overhead', '0', '--quiet']);
        assert.equal(result.status, 0, result.stderr);
        assert.equal(await sha256File(dest), expected, name);
      }
    } finally {
      await nginx.stop();
    }
  });

  test('pod mode (a blank disk) runs from the install with its metric server and logger', () => {
    const root = writableDir('pod');
    writableDir(path.join('pod', 'data'));
    writableDir(path.join('pod', 'dev'));
    const result = binary(['-v=1'], {
      CDI_IMPORTER_ROOT: root,
      CDI_IMPORTER_METRICS_PORT: '0',
      IMPORTER_SOURCE: 'none',
      IMPORTER_IMAGE_SIZE: '8Mi',
      FILESYSTEM_OVERHEAD: '0',
      PREALLOCATION: 'false',
    });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(readFileSync(path.join(root, 'dev', 'termination-log'), 'utf8'), '{"message":"Import Complete","preallocationApplied":false}');
    assert.match(result.stderr, /"msg":"serving the progress metric over https"/);
  });
});
