/**
 * Runs `cdi-importer upload-server` as a child process (as the pod runs it) against a temporary
 * root, and drives it with curl, as CDI's upload proxy would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { cliCommand, repoRoot } from '../support/cli.js';
import { freePort, waitForPort } from '../support/free-port.js';
import { makeTempDir, type TempDir } from '../support/tools.js';
import type { KeyPair } from '../support/tls-ca.js';
import type { UploadCertificates } from './client-certificates.js';

export const CLIENT_NAME = 'cdi-uploadproxy';

export interface RunningUploadServer {
  root: TempDir;
  port: number;
  destination: string;
  child: ChildProcess;
  /** Resolves with the exit code once the server process has ended. */
  exited: Promise<number | null>;
  stderr(): string;
  terminationMessage(): string;
  url(pathname: string): string;
  kill(): void;
}

/** `args`: the command line after the program (CDI's upload pod passes only klog flags, no command); `scratch`: a scratch volume. */
export async function startUploadServer(
  certs: UploadCertificates,
  env: NodeJS.ProcessEnv = {},
  args = ['upload-server'],
  options: { scratch?: boolean } = {},
): Promise<RunningUploadServer> {
  const root = makeTempDir('cdi-upload-');
  mkdirSync(root.join('data'));
  mkdirSync(root.join('dev'));
  if (options.scratch) mkdirSync(root.join('scratch'));
  const destination = root.join('data', 'disk.img');
  const port = await freePort();
  const child = spawn(process.execPath, [...cliCommand, ...args], {
    cwd: repoRoot,
    env: {
      ...process.env,
      CDI_IMPORTER_ROOT: root.path,
      LISTEN_ADDRESS: '127.0.0.1',
      LISTEN_PORT: String(port),
      HEALTHZ_PORT: 'none',
      TLS_CERT_FILE: certs.server.cert,
      TLS_KEY_FILE: certs.server.key,
      CLIENT_CERT_FILE: certs.caCert,
      CLIENT_NAME,
      DESTINATION: destination,
      FILESYSTEM_OVERHEAD: '0',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d) => (stderr += d));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve((exitCode = code))));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  void exited.then(() => clearTimeout(timer));
  try {
    await waitForPort(port, 20_000, () => (exitCode !== undefined ? `upload server exited ${exitCode}: ${stderr}` : undefined));
  } catch (err) {
    child.kill('SIGKILL');
    root.remove();
    throw err;
  }
  return {
    root,
    port,
    destination,
    child,
    exited,
    stderr: () => stderr,
    terminationMessage: () => readFileSync(root.join('dev', 'termination-log'), 'utf8'),
    url: (pathname) => `https://127.0.0.1:${port}${pathname}`,
    kill: () => {
      if (exitCode === undefined) child.kill('SIGKILL');
    },
  };
}

export interface CurlResult {
  /** curl's own exit code: 0 when an HTTP answer came, non-zero when e.g. the handshake failed. */
  exitCode: number | null;
  status: number;
  body: string;
  stderr: string;
}

/** curl with the test CA and, unless `clientCert` is null, a client certificate. */
export function curl(args: string[], clientCert: KeyPair | null, caCert: string): Promise<CurlResult> {
  const identity = clientCert ? ['--cert', clientCert.cert, '--key', clientCert.key] : [];
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '--max-time', '60', '--cacert', caCert, ...identity, '-w', '\n%{http_code}', ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (exitCode) => {
      const cut = stdout.lastIndexOf('\n');
      resolve({ exitCode, status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, Math.max(cut, 0)), stderr });
    });
  });
}

export const binary = (file: string) => ['-H', 'Content-Type: application/octet-stream', '--data-binary', `@${file}`];
export const formFile = (file: string) => ['-F', 'note=ignored field', '-F', `file=@${file};filename=${path.basename(file)}`];

/** A TLS connection to the upload server as the proxy makes one, for requests curl cannot send (a body that stops, a cut form). */
export async function connectAsClient(port: number, clientCert: KeyPair, caCert: string): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(caCert), cert: readFileSync(clientCert.cert), key: readFileSync(clientCert.key), servername: 'localhost' });
  await once(socket, 'secureConnect');
  return socket;
}
