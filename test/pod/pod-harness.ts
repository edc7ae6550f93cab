/**
 * Runs the real binary in pod mode against a pod-like directory tree (CDI_IMPORTER_ROOT moved to
 * a temp dir): `data/`, `dev/` (termination-log, optionally cdi-block-volume), optionally
 * `scratch/`. The child is spawned so tests can also signal it and scrape it while it runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { mainScript, repoRoot } from '../support/cli.js';
import { makeTempDir, type TempDir } from '../support/tools.js';

export interface PodRoot extends TempDir {
  dataDir: string;
  diskImage: string;
  scratchDir: string;
  terminationLog: string;
  blockDevice: string;
  /** The termination message, or undefined when none was written. */
  terminationMessage(): string | undefined;
}

export function makePodRoot(options: { scratch?: boolean } = {}): PodRoot {
  const dir = makeTempDir('cdi-pod-');
  mkdirSync(dir.join('data'));
  mkdirSync(dir.join('dev'));
  if (options.scratch) mkdirSync(dir.join('scratch'));
  const terminationLog = dir.join('dev', 'termination-log');
  return {
    ...dir,
    dataDir: dir.join('data'),
    diskImage: dir.join('data', 'disk.img'),
    scratchDir: dir.join('scratch'),
    terminationLog,
    blockDevice: dir.join('dev', 'cdi-block-volume'),
    terminationMessage: () => (existsSync(terminationLog) ? readFileSync(terminationLog, 'utf8') : undefined),
  };
}

export interface PodRun {
  child: ChildProcess;
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) when the child ends. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `cdi-importer [args]` in pod mode with only the given environment (plus PATH/HOME). */
export function startPod(root: PodRoot, env: Record<string, string>, args: string[] = [], timeoutMs = 120_000): PodRun {
  const child = spawn(process.execPath, ['--import', 'tsx', mainScript, ...args], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      CDI_IMPORTER_ROOT: root.path,
      CDI_IMPORTER_METRICS_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d) => (stderr += d));
  child.stdout!.setEncoding('utf8').on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  return { child, stderr: () => stderr, exited };
}

export interface PodResult {
  code: number | null;
  stderr: string;
  message: string | undefined;
  /** The message parsed as JSON when it is JSON. */
  json: Record<string, unknown> | undefined;
}

export async function runPod(root: PodRoot, env: Record<string, string>, args: string[] = []): Promise<PodResult> {
  const run = startPod(root, env, args);
  const { code } = await run.exited;
  const message = root.terminationMessage();
  let json: Record<string, unknown> | undefined;
  try {
    json = message !== undefined ? (JSON.parse(message) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { code, stderr: run.stderr(), message, json };
}

/** One scrape of the metric endpoint (self-signed certificate, so no verification). */
export function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/metrics', rejectUnauthorized: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('scrape timed out')));
    req.on('error', reject);
  });
}

export { sha256OfRange } from '../support/tools.js';
