import { BlockList, isIP } from 'node:net';

/**
 * `no_proxy` matching as curl (7.86+) and Go's httpproxy do it: `*`, host names (with or without a
 * leading dot) as domain suffixes, IPs, optional `:port`, and CIDR ranges (`10.0.0.0/8`, `fd00::/8`)
 * for hosts given as IP addresses (cluster proxy settings list the pod and service networks so).
 */
export function bypassesProxy(url: URL, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const host = bareHost(url);
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  for (const raw of noProxy.split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    if (entry.includes('/')) {
      if (inRange(host, entry)) return true;
      continue;
    }
    // `[v6]:port`, `host:port`, or a bare name or address (an IPv6 address has several colons).
    const match = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry) ?? (entry.split(':').length === 2 ? /^(.*):(\d+)$/.exec(entry) : null);
    const entryHost = (match ? match[1]! : entry).replace(/^\*?\./, '');
    if (match?.[2] !== undefined && match[2] !== port) continue;
    if (host === entryHost || host.endsWith(`.${entryHost}`)) return true;
  }
  return false;
}

/** `localhost` or a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z): what Go's httpproxy never proxies. */
export function isLoopback(url: URL): boolean {
  const host = bareHost(url);
  if (host === 'localhost') return true;
  if (isIP(host) === 0) return false;
  return inRange(host, isIP(host) === 4 ? '127.0.0.0/8' : '::1/128') || inRange(host, '::ffff:127.0.0.0/104');
}

/** The URL's host in lower case, an IPv6 address without its brackets. */
function bareHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

/** Whether `host`, an IP address, lies in `cidr`; false for names and malformed ranges. */
function inRange(host: string, cidr: string): boolean {
  const [network, bitsText] = cidr.split('/') as [string, string];
  const family = isIP(network);
  const bits = Number(bitsText);
  if (family === 0 || isIP(host) !== family || !/^\d+$/.test(bitsText) || bits > (family === 4 ? 32 : 128)) return false;
  const range = new BlockList();
  const type = family === 4 ? 'ipv4' : 'ipv6';
  range.addSubnet(network, bits, type);
  return range.check(host, type);
}
