/** `no_proxy` matching as curl does it: `*`, host names (with or without a leading dot) as domain suffixes, IPs, optional `:port`. */
export function bypassesProxy(url: URL, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  for (const raw of noProxy.split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    // `[v6]:port`, `host:port`, or a bare name or address (an IPv6 address has several colons).
    const match = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry) ?? (entry.split(':').length === 2 ? /^(.*):(\d+)$/.exec(entry) : null);
    const entryHost = (match ? match[1]! : entry).replace(/^\*?\./, '');
    if (match?.[2] !== undefined && match[2] !== port) continue;
    if (host === entryHost || host.endsWith(`.${entryHost}`)) return true;
  }
  return false;
}
