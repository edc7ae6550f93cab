/**
 * `cdi-importer upload-server`: a drop-in for CDI's `cdi-uploadserver` (SPEC §5.3). Reads the
 * environment, serves one upload, and reports through the exit code and the termination message
 * (`/dev/termination-log`, under CDI_IMPORTER_ROOT like pod mode).
 */
import { oneLine } from '../errors.js';
import { createLogger, type AppLogger } from '../util/logger.js';
import { podLogLevel } from '../pod/klog-flags.js';
import { podPaths } from '../pod/paths.js';
import { formatFailureLine, formatTerminationJson, writeTerminationMessage } from '../pod/termination-message.js';
import { ImportProgressMetric } from '../pod/progress-metric.js';
import { METRICS_PORT_ENV, startMetricsServer, type MetricsServer } from '../pod/metrics-server.js';
import { parseUploadEnvironment, type UploadConfig } from './upload-environment.js';
import { UploadServer, type ImportFunction, type UploadOutcome } from './upload-server.js';
import { onStopSignals } from '../util/stop-signals.js';

export { UploadServer } from './upload-server.js';
export { parseUploadEnvironment } from './upload-environment.js';
export { MultipartFilePart, multipartBoundary } from './multipart-file-part.js';

export const UPLOAD_COMPLETE = 'Upload Complete';
export const DEADLINE_PASSED = 'Deadline Passed';

export interface UploadServerOptions {
  env?: NodeJS.ProcessEnv;
  log?: AppLogger;
  /** The pipeline; injectable so the front door can be tested on its own. */
  importImage?: ImportFunction;
  /** The environment already read (the upload-server command reads it first, to report mistakes as usage errors). */
  config?: UploadConfig;
}

/** After the outcome is reported, anything still holding the process open gets this long. */
const EXIT_GRACE_MS = 5_000;

/**
 * Runs the upload server and makes sure the process ends: a pipeline stopped by the deadline or
 * a signal may still hold a handle, and the pod must not hang on it.
 */
export async function runUploadServerAndExit(options: UploadServerOptions = {}): Promise<number> {
  const code = await runUploadServer(options);
  setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
  return code;
}

/**
 * CDI starts its upload pod from the upload server image with klog flags only (`-v=N`) and the
 * upload variables. Our one image serves as both: pod mode without IMPORTER_SOURCE but with the
 * upload server's required variables is an upload pod.
 */
export function isUploadPodEnvironment(env: NodeJS.ProcessEnv): boolean {
  return env.IMPORTER_SOURCE === undefined && env.TLS_CERT_FILE !== undefined && env.CLIENT_NAME !== undefined;
}

/** The upload pod: klog flags on the command line, the rest from the environment. */
export async function runUploadPod(argv: string[]): Promise<number> {
  const level = podLogLevel(argv);
  if (level === undefined) return 2;
  return runUploadServerAndExit({ log: createLogger({ level, base: { component: 'uploadserver' } }) });
}

/** The termination message and exit code for how the server ended. */
export function outcomeReport(outcome: UploadOutcome): { exitCode: number; message: string } {
  switch (outcome.kind) {
    case 'complete':
      // CDI's field order: the controller parses it, people read it.
      return {
        exitCode: 0,
        message: JSON.stringify({ preallocationApplied: outcome.result.preallocationApplied, message: UPLOAD_COMPLETE }),
      };
    case 'deadline':
      return { exitCode: 0, message: formatTerminationJson({ deadlinePassed: true, message: DEADLINE_PASSED }) };
    case 'failed':
      return { exitCode: 1, message: formatFailureLine(`Unable to process data: ${oneLine(outcome.error)}`) };
    case 'stopped':
      return { exitCode: 1, message: formatFailureLine(`upload server stopped: received ${outcome.signal}`) };
  }
}

export async function runUploadServer(options: UploadServerOptions = {}): Promise<number> {
  const env = options.env ?? process.env;
  const log = options.log ?? createLogger({ base: { component: 'uploadserver' } });
  const paths = podPaths(env);
  const report = (exitCode: number, message: string): number => {
    try {
      writeTerminationMessage(paths.terminationLog, message);
    } catch (err) {
      log.error({ error: oneLine(err), file: paths.terminationLog }, 'could not write the termination message');
    }
    if (exitCode === 0) log.info({ terminationMessage: message }, 'UploadServer successfully exited');
    else log.error({ terminationMessage: message }, 'UploadServer failed');
    return exitCode;
  };

  const failedToStart = (err: unknown) => report(1, formatFailureLine(`UploadServer failed: ${oneLine(err)}`));
  let config: UploadConfig;
  let server: UploadServer;
  let metrics: MetricsServer | undefined;
  const metric = new ImportProgressMetric(env.OWNER_UID ?? '');
  try {
    config = options.config ?? parseUploadEnvironment(env, paths);
    const pipeline = options.importImage ?? (await import('../pipeline/import-image.js')).importImage;
    // The progress metric (SPEC §4.4) from the upload's Content-Length, 100 when complete.
    const importImage: ImportFunction = async (request, ctx) => {
      const result = await pipeline(request, { ...ctx, progress: (progress) => metric.update(progress) });
      metric.complete();
      return result;
    };
    server = new UploadServer(config, log, importImage);
  } catch (err) {
    return failedToStart(err);
  }

  // Handled before the ports are bound: a stop during start-up still ends with its report.
  const stopHandlingSignals = onStopSignals((signal) => server.stop(signal));
  try {
    try {
      await server.start();
      metrics = await startUploadMetrics(env, metric, log);
    } catch (err) {
      return failedToStart(err);
    }
    const outcome = await server.outcome;
    const { exitCode, message } = outcomeReport(outcome);
    report(exitCode, message);
    if (outcome.kind === 'complete' && config.lingerSeconds > 0) {
      // Keep answering (409 to further uploads) for a while; a signal ends the wait.
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          stopWaiting();
          resolve();
        };
        const timer = setTimeout(done, config.lingerSeconds * 1000);
        const stopWaiting = onStopSignals(done);
      });
    }
    await Promise.all([server.close(), metrics?.close()]);
    return exitCode;
  } finally {
    stopHandlingSignals();
  }
}

/**
 * The upload server itself holds CDI's metrics port (8443), so the progress metric is served only
 * when CDI_IMPORTER_METRICS_PORT names another port — beyond CDI, whose upload server has none.
 */
async function startUploadMetrics(env: NodeJS.ProcessEnv, metric: ImportProgressMetric, log: AppLogger): Promise<MetricsServer | undefined> {
  const text = env[METRICS_PORT_ENV]?.trim();
  if (!text) return undefined;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    log.warn({ value: text }, `ignoring ${METRICS_PORT_ENV}: not a port number`);
    return undefined;
  }
  try {
    return await startMetricsServer(metric, port, log);
  } catch (err) {
    // Progress reporting is not worth failing an upload for.
    log.warn({ error: oneLine(err) }, 'could not serve the progress metric');
    return undefined;
  }
}
