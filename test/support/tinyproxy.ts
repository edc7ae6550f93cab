/**
 * tinyproxy on 127.0.0.1 for tests: forwards plain http (absolute-URI requests) and tunnels
 * https with CONNECT (no ConnectPort line: every port is allowed).
 *
 *   const proxy = await startTinyproxy();   proxy.url → 'http://127.0.0.1:PORT'
 *   startTinyproxy({ connectPorts: [443] })   CONNECT refused (403) to any other port
 *   startTinyproxy({ basicAuth: { user, password } })   407 without those credentials
 *   proxy.log()                               its log (lists CONNECT and GET lines)
 *   await proxy.stop()
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { freePort, waitForPort } from './free-port.js';
import { makeTempDir } from './tools.js';

export interface TinyproxyServer {
  url: string;
  log(): string;
  stop(): Promise<void>;
}

export interface TinyproxyOptions {
  /** Ports CONNECT may reach (tinyproxy's ConnectPort); default: every port. */
  connectPorts?: number[];
  /** Proxy credentials required (tinyproxy's BasicAuth): 407 without them. */
  basicAuth?: { user: string; password: string };
}

export async function startTinyproxy(options: TinyproxyOptions = {}): Promise<TinyproxyServer> {
  const dir = makeTempDir('cdi-tinyproxy-');
  const port = await freePort();
  const asRoot = process.getuid?.() === 0;
  writeFileSync(
    dir.join('tinyproxy.conf'),
    [
      ...(asRoot ? ['User root', 'Group root'] : []),
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 60',
      'MaxClients 20',
      `LogFile "${dir.join('tinyproxy.log')}"`,
      'LogLevel Connect',
      'Allow 127.0.0.1',
      'DisableViaHeader Yes',
      ...(options.connectPorts ?? []).map((p) => `ConnectPort ${p}`),
      ...(options.basicAuth ? [`BasicAuth ${options.basicAuth.user} ${options.basicAuth.password}`] : []),
      '',
    ].join('\n'),
  );
  const child = spawn('tinyproxy', ['-d', '-c', dir.join('tinyproxy.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    dir.remove();
  };
  try {
    await waitForPort(port, 10_000, () => (child.exitCode !== null ? `tinyproxy exited ${child.exitCode}: ${stderr.trim()}` : undefined));
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    log: () => {
      try {
        return readFileSync(dir.join('tinyproxy.log'), 'utf8');
      } catch {
        return '';
      }
    },
    stop,
  };
}
