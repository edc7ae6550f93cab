/**
 * A TCP relay on 127.0.0.1 that delays every piece of data by DELAY_MS in each direction (a round
 * trip of twice that), in order: a server "far away" for the HTTP benchmark, whose nginx answers
 * on the loopback in well under a millisecond. Bandwidth is not limited.
 *
 *   node --import tsx bench/delay-proxy.ts LISTEN_PORT TARGET_PORT DELAY_MS   (prints "listening")
 */
import net from 'node:net';

const [listenPort, targetPort, delayMs] = process.argv.slice(2).map(Number);
if (!listenPort || !targetPort || delayMs === undefined || Number.isNaN(delayMs)) {
  console.error('usage: delay-proxy.ts LISTEN_PORT TARGET_PORT DELAY_MS');
  process.exit(2);
}

/** Forwards `from` to `to` DELAY_MS late; an end or a failure follows the data it came after. */
function relay(from: net.Socket, to: net.Socket): void {
  from.on('data', (data) => setTimeout(() => to.destroyed || to.write(data), delayMs));
  from.on('end', () => setTimeout(() => to.end(), delayMs));
  from.on('error', () => setTimeout(() => to.destroy(), delayMs));
}

net
  .createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    relay(client, upstream);
    relay(upstream, client);
  })
  .listen(listenPort, '127.0.0.1', () => console.log('listening'));
