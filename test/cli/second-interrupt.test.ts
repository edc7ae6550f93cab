/**
 * A second Ctrl-C (or SIGTERM) while the first is still unwinding exits at once, and still removes
 * what the import created: the hidden .partial file, or the entries of an archive extracted so far.
 * The child's pipeline ignores its abort signal, so only the forced exit can end it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { repoRoot, tsxLoader } from '../support/cli.js';
import { makeTempDir, run, type TempDir } from '../support/tools.js';

const fixture = path.join(repoRoot, 'test', 'cli', 'fixtures', 'stuck-import.ts');
let dir: TempDir;
before(() => (dir = makeTempDir()));
after(() => dir.remove());

async function startStuckImport(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcessWithoutNullStreams; stderr: () => string; stdout: () => string }> {
  const child = spawn(process.execPath, ['--import', tsxLoader, fixture, ...args], { cwd: repoRoot, env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  while (!stdout.includes('stuck\n') && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.match(stdout, /stuck/, stderr);
  return { child, stderr: () => stderr, stdout: () => stdout.replace('stuck\n', '') };
}

/** First signal: the child keeps going (its pipeline is stuck). Second: it leaves within seconds. */
async function interruptTwice(child: ChildProcessWithoutNullStreams, signal: NodeJS.Signals): Promise<number | null> {
  const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  child.kill(signal);
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(child.exitCode, null, 'the first signal only asks the pipeline to stop');
  const started = Date.now();
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const [code, killedBy] = await closed;
  clearTimeout(timer);
  assert.equal(killedBy, null, 'ended by our own exit, not by the signal');
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  return code;
}

describe('a second interrupt', () => {
  test('file import: exits 1 at once and removes the hidden .partial file', async () => {
    const dest = dir.join('disk.img');
    const { child, stderr } = await startStuckImport(['file', dest]);
    const leftovers = () => readdirSync(dir.path).filter((name) => name.startsWith('.disk.img.partial-') || name === 'disk.img');
    assert.equal(leftovers().length, 1, 'the import created its temporary file');
    assert.equal(await interruptTwice(child, 'SIGINT'), 1, stderr());
    assert.match(stderr(), /stopped at once on a second interrupt/);
    assert.deepEqual(leftovers(), []);
  });

  test('--json: the one object on stdout still comes, saying it was cancelled', async () => {
    const dest = dir.join('json.img');
    const { child, stderr, stdout } = await startStuckImport(['file', dest], { STUCK_IMPORT_JSON: '1' });
    assert.equal(await interruptTwice(child, 'SIGTERM'), 1, stderr());
    assert.deepEqual(JSON.parse(stdout()), {
      ok: false,
      category: 'cancelled',
      error: 'stopped at once on a second interrupt; its temporary files were removed',
    });
  });

  test('archive import: exits 1 at once and removes the entries extracted so far', async () => {
    const tree = dir.join('tree');
    mkdirSync(path.join(tree, 'sub'), { recursive: true });
    for (const name of ['a.txt', 'b.txt', 'sub/c.txt']) writeFileSync(path.join(tree, name), Buffer.alloc(30_000, name));
    const tar = dir.join('tree.tar');
    run('tar', ['-cf', tar, '-C', tree, '.']);
    const out = dir.join('out');
    mkdirSync(out);
    const { child, stderr } = await startStuckImport(['archive', out, tar]);
    assert.ok(readdirSync(out).length > 0, 'entries were extracted before the signals');
    assert.equal(await interruptTwice(child, 'SIGTERM'), 1, stderr());
    assert.deepEqual(readdirSync(out), []);
  });
});
