/** Runs the cdi-importer binary from source (through tsx) as a child process, as users run it. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const mainScript = path.join(repoRoot, 'src', 'main.ts');
/** tsx's loader by absolute URL, so the child may run in any working directory. */
export const tsxLoader = pathToFileURL(path.join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
/** The argv prefix that runs the CLI from source: spawn(process.execPath, [...cliCommand, ...args]). */
export const cliCommand = ['--import', tsxLoader, mainScript];

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  input?: Buffer | string | NodeJS.ReadableStream;
  cwd?: string;
  timeoutMs?: number;
  /** A command that runs the CLI, e.g. ['strace', '-f', '-o', FILE]. */
  wrap?: string[];
}

export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const command = [...(options.wrap ?? []), process.execPath, ...cliCommand, ...args];
    const child = spawn(command[0]!, command.slice(1), {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {}); // the importer may exit before reading all of stdin
    const input = options.input;
    if (input === undefined) child.stdin.end();
    else if (typeof input === 'string' || Buffer.isBuffer(input)) child.stdin.end(input);
    else (input as NodeJS.ReadableStream).pipe(child.stdin);
  });
}
