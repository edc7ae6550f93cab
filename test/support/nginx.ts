/**
 * nginx serving a directory on 127.0.0.1 for tests (a real server: Range, ETag, Basic auth, TLS).
 *
 *   const nginx = await startNginx({ root: dir, auth: { username: 'u', password: 'p' }, certificates });
 *   nginx.http   → 'http://127.0.0.1:PORT/'        plain files
 *   nginx.http + 'auth/' …                          same files behind Basic auth (when `auth` is given)
 *   nginx.https  → 'https://127.0.0.1:PORT/'        TLS with `certificates.valid` (and /auth/ too)
 *   nginx.expiredHttps / nginx.wrongHostHttps       TLS with the expired / wrong-host certificate
 *   nginx.requests()                                access log lines: { method, uri, status, range, bytes }
 *   await nginx.stop()
 *
 * Everything nginx writes (config, pid, logs, temp paths) lives in its own temp dir, removed by stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { freePorts, waitForPort } from './free-port.js';
import type { TestCertificates } from './tls-ca.js';
import { makeTempDir, run } from './tools.js';

export interface NginxOptions {
  /** Directory served at `/` (and at `/auth/` when `auth` is set). */
  root: string;
  auth?: { username: string; password: string };
  /** With these, HTTPS servers start too. */
  certificates?: TestCertificates;
}

export interface NginxRequest {
  method: string;
  uri: string;
  status: number;
  /** The Range header sent, '' when none. */
  range: string;
  bytes: number;
}

export interface NginxServer {
  http: string;
  https?: string;
  expiredHttps?: string;
  wrongHostHttps?: string;
  requests(): NginxRequest[];
  stop(): Promise<void>;
}

export async function startNginx(options: NginxOptions): Promise<NginxServer> {
  const dir = makeTempDir('cdi-nginx-');
  const root = options.root.replace(/\/?$/, '/');
  if (options.auth) {
    run('htpasswd', ['-bc', dir.join('htpasswd'), options.auth.username, options.auth.password], { stdio: 'pipe' });
  }
  const locations = [
    `location / { root ${root}; }`,
    options.auth
      ? `location /auth/ { alias ${root}; auth_basic "cdi-importer test"; auth_basic_user_file ${dir.join('htpasswd')}; }`
      : '',
  ].join('\n    ');
  const certs = options.certificates;
  const [http, https = 0, expired = 0, wrongHost = 0] = await freePorts(certs ? 4 : 1);
  const ports = { http: http!, https, expired, wrongHost };
  const servers = [`server { listen 127.0.0.1:${ports.http}; ${locations} }`];
  if (certs) {
    const tls = (port: number, pair: { cert: string; key: string }) =>
      `server { listen 127.0.0.1:${port} ssl; ssl_certificate ${pair.cert}; ssl_certificate_key ${pair.key}; ssl_protocols TLSv1.2 TLSv1.3; ${locations} }`;
    servers.push(tls(ports.https, certs.valid), tls(ports.expired, certs.expired), tls(ports.wrongHost, certs.wrongHost));
  }
  const config = [
    // Workers would run as `nobody` and could not read a 0700 temp dir.
    process.getuid?.() === 0 ? 'user root;' : '',
    'daemon off;',
    'worker_processes 1;',
    `pid ${dir.join('nginx.pid')};`,
    `error_log ${dir.join('error.log')} warn;`,
    'events { worker_connections 256; }',
    'http {',
    `  log_format ranges '$request_method $uri $status "$http_range" $body_bytes_sent';`,
    `  access_log ${dir.join('access.log')} ranges;`,
    `  client_body_temp_path ${dir.join('client_body')};`,
    `  proxy_temp_path ${dir.join('proxy')};`,
    `  fastcgi_temp_path ${dir.join('fastcgi')};`,
    `  uwsgi_temp_path ${dir.join('uwsgi')};`,
    `  scgi_temp_path ${dir.join('scgi')};`,
    '  default_type application/octet-stream;',
    '  sendfile on;',
    ...servers.map((s) => `  ${s}`),
    '}',
    '',
  ].join('\n');
  writeFileSync(dir.join('nginx.conf'), config);
  writeFileSync(dir.join('access.log'), '');

  const child: ChildProcess = spawn('nginx', ['-p', dir.path, '-c', dir.join('nginx.conf'), '-e', dir.join('error.log')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const dead = () => (child.exitCode !== null ? `nginx exited ${child.exitCode}: ${stderr.trim()}` : undefined);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGQUIT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    dir.remove();
  };
  try {
    for (const port of Object.values(ports)) if (port) await waitForPort(port, 10_000, dead);
  } catch (err) {
    await stop();
    throw err;
  }
  const base = (scheme: string, port: number) => (port ? `${scheme}://127.0.0.1:${port}/` : undefined);
  return {
    http: base('http', ports.http)!,
    https: base('https', ports.https),
    expiredHttps: base('https', ports.expired),
    wrongHostHttps: base('https', ports.wrongHost),
    requests: () =>
      readFileSync(dir.join('access.log'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [method, uri, status, range, bytes] = /^(\S+) (\S+) (\d+) "([^"]*)" (\d+)$/.exec(line)!.slice(1);
          return { method: method!, uri: uri!, status: Number(status), range: range === '-' ? '' : range!, bytes: Number(bytes) };
        }),
    stop,
  };
}
