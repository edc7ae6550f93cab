/**
 * Serves the progress metric over HTTPS with a certificate made at start, as CDI's importer does
 * (the controller scrapes `https://<pod>:8443/metrics` without verifying it). Any path answers.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { selfSignedCertificate } from './self-signed-certificate.js';
import type { Logger } from '../request.js';
import type { ImportProgressMetric } from './progress-metric.js';

export const METRICS_PORT_ENV = 'CDI_IMPORTER_METRICS_PORT';
export const DEFAULT_METRICS_PORT = 8443;

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(
  metric: ImportProgressMetric,
  port: number,
  log: Logger,
  host?: string,
): Promise<MetricsServer> {
  const { key, cert } = selfSignedCertificate('cdi-importer');
  const server = https.createServer({ key, cert, minVersion: 'TLSv1.2' }, (_req, res) => {
    res.writeHead(200, { 'content-type': metric.contentType });
    res.end(metric.metrics());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // The import decides when the process ends, not a scraper's keep-alive connection.
  server.unref();
  const actualPort = (server.address() as AddressInfo).port;
  log.debug({ port: actualPort }, 'serving the progress metric over https');
  return {
    port: actualPort,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
