/**
 * A slow HTTP server: sends one buffer at a fixed rate, so a test can watch an import while it
 * runs (progress metric, SIGTERM). Content-Length is sent (the metric needs a total); Range is
 * not offered, so the importer streams.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';

export interface TrickleServer {
  url: string;
  /** Bytes sent so far, across requests. */
  sent(): number;
  stop(): Promise<void>;
}

/** `startDelayMs` holds the response back first, so a watcher can see the import at 0%. */
export async function startTrickleServer(content: Buffer, bytesPerSecond: number, startDelayMs = 0): Promise<TrickleServer> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let sent = 0;
  const tickMs = 50;
  const perTick = Math.max(1, Math.floor((bytesPerSecond * tickMs) / 1000));
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-length': content.length, 'content-type': 'application/octet-stream', 'accept-ranges': 'none' });
    if (req.method === 'HEAD') return res.end();
    let offset = 0;
    const started = Date.now() + startDelayMs;
    const timer = setInterval(() => {
      if (Date.now() < started) return;
      const chunk = content.subarray(offset, offset + perTick);
      offset += chunk.length;
      sent += chunk.length;
      if (offset >= content.length) {
        clearInterval(timer);
        timers.delete(timer);
        res.end(chunk);
      } else {
        res.write(chunk);
      }
    }, tickMs);
    timers.add(timer);
    res.on('close', () => {
      clearInterval(timer);
      timers.delete(timer);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/disk.img`,
    sent: () => sent,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearInterval(timer);
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
