/** The undici dispatchers for one source: TLS settings, and proxies from the environment. */
import type { Agent, Dispatcher, ProxyAgent } from 'undici';
import { undici } from './undici-core.js';
import type { TransportOptions } from '../../request.js';
import { bypassesProxy, isLoopback } from './no-proxy.js';
import { usageError } from '../../errors.js';
import { redactedUrlText } from './request-headers.js';
import { tlsConnectOptions, withSecureContext, type TlsConnectOptions } from './tls-options.js';

export interface ProxySettings {
  httpProxy?: string;
  httpsProxy?: string;
  noProxy?: string;
}

/**
 * Lower-case names win over upper-case ones, as curl reads them. A proxy without a scheme
 * (`proxy.corp:3128`) is an http:// one, as curl and Go's httpproxy (CDI's) take it.
 */
export function proxySettingsFromEnv(env: NodeJS.ProcessEnv = process.env): ProxySettings {
  const pick = (name: string) => env[name] || env[name.toUpperCase()] || undefined;
  const proxyUrl = (name: string) => {
    const value = pick(name)?.trim();
    if (!value) return undefined;
    const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
    if (!URL.canParse(url)) throw usageError(`${name} (or ${name.toUpperCase()}) is not a proxy URL: "${value}"; expected http://host:port`);
    const { protocol } = new URL(url);
    if (protocol !== 'http:' && protocol !== 'https:') {
      // undici's SOCKS5 support is experimental: a proxy that does not answer left the process
      // hanging after its error (found by a QA pass), and socks5h:// it does not take at all.
      throw usageError(
        `${name} (or ${name.toUpperCase()}) is a ${protocol.slice(0, -1)} proxy (${redactedUrlText(url)}): cdi-importer goes through http:// and https:// proxies only; put an HTTP proxy in front of a SOCKS one (privoxy, gost) or unset the variable`,
      );
    }
    return url;
  };
  return { httpProxy: proxyUrl('http_proxy'), httpsProxy: proxyUrl('https_proxy'), noProxy: pick('no_proxy') };
}

/** The largest answer head read (see the Agent options below). */
export const MAX_HEADER_BYTES = 1 << 20;

/** No byte for this long stalls a download (`--stall-timeout`); it is resumed then. */
export function stallTimeoutMs(transport: TransportOptions): number {
  return (transport.stallTimeoutSeconds ?? 60) * 1000;
}

/**
 * How long a request waits for the server's answer: the stall timeout, but at least 10 minutes.
 * A server that builds or compresses the file on request answers only once it is ready; CDI
 * waits for headers without limit and gives up after 10 minutes without progress.
 */
export function firstAnswerWaitMs(transport: TransportOptions): number {
  return Math.max(stallTimeoutMs(transport), 10 * 60_000);
}

/**
 * Picks the dispatcher per URL rather than using undici's EnvHttpProxyAgent, which sends
 * https through `http_proxy` when `https_proxy` is unset; curl and Go do not.
 */
export class SourceDispatchers {
  // Made on first use: an import read only by direct Range requests (direct-range-client.ts)
  // never loads undici, and a plain-http one never builds a TLS context. Proxy agents are made
  // at once, so a bad proxy URL fails early.
  private directHttp?: Agent;
  private directHttps?: Agent;
  private readonly makeDirect: (tls?: TlsConnectOptions) => Agent;
  private readonly viaHttpProxy?: ProxyAgent;
  private readonly viaHttpsProxy?: ProxyAgent;
  private tlsSettings?: TlsConnectOptions;
  private readonly readTlsSettings: () => TlsConnectOptions;

  readonly proxy: ProxySettings;
  private readonly loopbackBypassesProxy: boolean;

  /** `env`: where the proxy variables and SSL_CERT_FILE / SSL_CERT_DIR are read. */
  constructor(transport: TransportOptions, env: NodeJS.ProcessEnv = process.env) {
    const proxy = proxySettingsFromEnv(env);
    this.proxy = proxy;
    this.loopbackBypassesProxy = transport.loopbackBypassesProxy === true;
    // A TLS-intercepting proxy re-signs the origin's certificate, so its CA is trusted for the origin too.
    const caPaths = [...(transport.caPaths ?? []), ...(transport.proxyCaPaths ?? [])];
    this.readTlsSettings = () => (this.tlsSettings ??= tlsConnectOptions(caPaths, transport.insecure, env));
    // The user's CA files are read (and checked) now, so a bad one fails before anything is fetched;
    // the system's CAs only once TLS is used (a plain-http import reads no certificate bundle).
    if (caPaths.length > 0) this.readTlsSettings();
    const common = {
      // Stalls while the body flows are watched by the source, which knows when the consumer
      // (not the network) is the slow side.
      bodyTimeout: 0,
      // A silent answer mid-download is a stall (the first one may wait longer: firstAnswerWaitMs).
      headersTimeout: stallTimeoutMs(transport),
      // undici's 16 KiB limit refuses heads that servers with large policy or cookie headers send
      // (curl takes 100 KiB a header, Go 1 MiB in all): 1 MiB, which keeps memory bounded.
      maxHeaderSize: MAX_HEADER_BYTES,
    };
    this.makeDirect = (tls) => new (undici().Agent)({ ...common, ...(tls ? { connect: tls } : {}) });
    const proxyTls = (proxyUrl: string) =>
      proxyUrl.startsWith('https:') ? withSecureContext(tlsConnectOptions(transport.proxyCaPaths ?? [], transport.insecure, env)) : undefined;
    // Plain http goes to the proxy as an absolute-URI request, as curl does; https tunnels with CONNECT.
    if (proxy.httpProxy) {
      this.viaHttpProxy = new (undici().ProxyAgent)({ ...common, uri: proxy.httpProxy, proxyTls: proxyTls(proxy.httpProxy), proxyTunnel: false });
    }
    if (proxy.httpsProxy) {
      this.viaHttpsProxy = new (undici().ProxyAgent)({
        ...common,
        uri: proxy.httpsProxy,
        requestTls: this.tls,
        proxyTls: proxyTls(proxy.httpsProxy),
        proxyTunnel: true,
      });
    }
  }

  /** The TLS settings of direct (not proxied) connections, with their context made on first use. */
  get tls(): TlsConnectOptions {
    return withSecureContext(this.readTlsSettings());
  }

  /** The proxy URL a request to `url` goes through, if any. */
  proxyFor(url: URL): string | undefined {
    const proxyUrl = url.protocol === 'https:' ? this.proxy.httpsProxy : this.proxy.httpProxy;
    if (!proxyUrl || bypassesProxy(url, this.proxy.noProxy) || (this.loopbackBypassesProxy && isLoopback(url))) return undefined;
    return proxyUrl;
  }

  for(url: URL): Dispatcher {
    const proxied = this.proxyFor(url) ? (url.protocol === 'https:' ? this.viaHttpsProxy : this.viaHttpProxy) : undefined;
    if (proxied) return proxied;
    return url.protocol === 'https:' ? (this.directHttps ??= this.makeDirect(this.tls)) : (this.directHttp ??= this.makeDirect());
  }

  /**
   * Called once nothing reads from the source any more: destroy rather than close, because
   * undici's graceful close leaves idle keep-alive sockets open for a while, and they hold the
   * process (a CLI run ends ~70 ms later than it needs to).
   */
  async close(): Promise<void> {
    await Promise.all([this.directHttp, this.directHttps, this.viaHttpProxy, this.viaHttpsProxy].map((d) => d?.destroy()));
  }
}
