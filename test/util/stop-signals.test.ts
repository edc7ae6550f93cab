/**
 * A SIGTERM that arrives before a command has its handler (while the bundle loads, while the
 * servers bind) is handed to that handler once it exists, instead of killing the process without
 * a report; one that nobody claims still ends the process, a second later.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { repoRoot, tsxLoader } from '../support/cli.js';

const fixture = path.join(repoRoot, 'test', 'util', 'fixtures', 'hold-stop-signals.ts');

function runFixture(mode: string): Promise<{ stdout: string; signal: NodeJS.Signals | null; code: number | null; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ['--import', tsxLoader, fixture, mode], { timeout: 20_000 }, (_err, stdout) =>
      resolve({ stdout, signal: child.signalCode, code: child.exitCode, ms: Date.now() - started }),
    );
  });
}

test('a stop signal before the handler exists is handed to the handler when it comes', async () => {
  const { stdout, signal } = await runFixture('claim');
  assert.equal(signal, null, 'the early signal did not kill the process');
  assert.match(stdout, /^handled SIGTERM\n/);
});

test('a stop signal nobody claims still ends the process, about a second later', async () => {
  const { stdout, signal } = await runFixture('never');
  assert.equal(signal, 'SIGTERM');
  assert.doesNotMatch(stdout, /still alive/);
});
