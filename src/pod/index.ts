/**
 * Pod mode (SPEC §4): `cdi-importer` with no subcommand, a drop-in for CDI's importer pod. Reads
 * the environment, runs the one pipeline, serves the progress metric, and reports through the
 * exit code and the termination message.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImportError, isImportError, oneLine, usageError } from '../errors.js';
import type { ImportContext, ImportRequest, ImportResult } from '../request.js';
import { createLogger, type AppLogger } from '../util/logger.js';
import { podLogLevel } from './klog-flags.js';
import { podPaths, type PodPaths } from './paths.js';
import { parsePodEnvironment, type PodConfig } from './pod-environment.js';
import { failureOutcome, successOutcome, type PodOutcome } from './pod-outcome.js';
import { ImportProgressMetric } from './progress-metric.js';
import { DEFAULT_METRICS_PORT, METRICS_PORT_ENV, startMetricsServer, type MetricsServer } from './metrics-server.js';
import { formatFailureLine, writeTerminationMessage } from './termination-message.js';
import { runForcedExitCleanups } from '../util/forced-exit.js';
import { onStopSignals } from '../util/stop-signals.js';
import { emptyVolume, volumesAreThePods } from './empty-volume.js';

type ImportFunction = (request: ImportRequest, ctx: ImportContext) => Promise<ImportResult>;

export interface PodModeOptions {
  env?: NodeJS.ProcessEnv;
  /** The pipeline; injectable so the front door can be tested on its own. */
  importImage?: ImportFunction;
}

/** Seconds to keep serving the metric after the import ends, so a scraper sees the final 100. */
const METRICS_LINGER_ENV = 'CDI_IMPORTER_METRICS_LINGER_SECONDS';
/** After SIGTERM, how long the pipeline gets to stop cleanly before we exit anyway. */
const STOP_GRACE_MS = 5_000;
const READY_FILE_TIMEOUT_SECONDS = 60;
const cancelledMessage = (signal: NodeJS.Signals) => `import cancelled: received ${signal}`;

export async function runPodMode(argv: string[], options: PodModeOptions = {}): Promise<number> {
  const env = options.env ?? process.env;
  const level = podLogLevel(argv);
  if (level === undefined) return 2;
  const log = createLogger({ level });
  const paths = podPaths(env);
  const importImage = options.importImage ?? (await import('../pipeline/import-image.js')).importImage;
  const runner = new PodRun(env, paths, log, importImage);
  return runner.run();
}

class PodRun {
  private readonly controller = new AbortController();
  private config?: PodConfig;
  private messageWritten = false;
  /** Set once the outcome is known: a SIGTERM after that only ends the metric linger. */
  private importDone = false;
  private stoppedBy: NodeJS.Signals = 'SIGTERM';
  private stopDeadline?: NodeJS.Timeout;

  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly paths: PodPaths,
    private readonly log: AppLogger,
    private readonly importImage: ImportFunction,
  ) {}

  async run(): Promise<number> {
    // SIGTERM is how Kubernetes stops a pod; SIGINT is Ctrl-C for someone running pod mode by hand.
    // Handled before the metrics port is bound: a stop during start-up still gets its report.
    const stopHandlingSignals = onStopSignals((signal) => this.onSignal(signal));
    const metric = new ImportProgressMetric(this.env.OWNER_UID ?? '');
    const server = await this.startMetrics(metric);
    this.log.info({ root: this.paths.root }, 'Starting importer');
    try {
      const outcome = await this.importOutcome(metric);
      this.importDone = true;
      this.finish(outcome);
      if (outcome.exitCode === 0) await this.linger(server);
      return outcome.exitCode;
    } finally {
      stopHandlingSignals();
      clearTimeout(this.stopDeadline);
      await server?.close();
    }
  }

  private async importOutcome(metric: ImportProgressMetric): Promise<PodOutcome> {
    let config: PodConfig;
    try {
      config = parsePodEnvironment(this.env, this.paths);
    } catch (err) {
      return failureOutcome(err, { scratchMounted: false });
    }
    this.config = config;
    for (const origin of config.ignoredHeaders) {
      this.log.warn({ origin }, 'ignoring an extra header that is not "Name: value" (its value is not shown: it may be a secret)');
    }
    const context = { sourceKind: config.sourceKind, scratchMounted: config.request.scratchDir !== undefined };
    try {
      const result = await this.runImport(config, metric);
      metric.complete();
      if (config.doneFile) touch(config.doneFile);
      this.log.info(
        { formats: result.formats, virtualSize: result.virtualSize, targetSize: result.targetSize, scratchBytesUsed: result.scratchBytesUsed },
        'Import Complete',
      );
      return successOutcome(result);
    } catch (err) {
      // The stack is for developers (-v=1 and up); the one line is for everyone.
      this.log.error({ error: oneLine(err), category: isImportError(err) ? err.category : 'internal' }, 'import failed');
      this.log.debug({ err }, 'import failure details');
      this.removePartialTarget(config);
      return failureOutcome(this.controller.signal.aborted ? this.cancelledError(err) : err, context);
    }
  }

  private async runImport(config: PodConfig, metric: ImportProgressMetric): Promise<ImportResult> {
    const request = config.request;
    // CDI's own words; there is nothing to extract from an empty disk.
    if (config.sourceKind === 'none' && request.contentType === 'archive') {
      throw usageError('Cannot create empty disk with content type archive');
    }
    // As CDI does before every attempt: what a killed attempt left must not fill or block this one.
    if (volumesAreThePods(this.env)) {
      if (!config.blockMode) await emptyVolume(this.paths.dataDir, this.log, this.controller.signal);
      if (request.scratchDir) await emptyVolume(request.scratchDir, this.log, this.controller.signal);
    }
    if (config.readyFile) await this.waitForReadyFile(config);
    this.log.debug({ source: describeSource(request), target: request.target, scratch: request.scratchDir }, 'begin import process');
    let lastLogged = -10;
    return this.importImage(request, {
      signal: this.controller.signal,
      log: this.log,
      progress: (report) => {
        metric.update(report);
        if (metric.value >= lastLogged + 10) {
          lastLogged = Math.floor(metric.value / 10) * 10;
          this.log.debug({ bytes: report.bytes, total: report.total, percent: metric.value }, 'progress');
        }
      },
    });
  }

  /** Node pull: the image's container signals with a file that the disk is being served. */
  private async waitForReadyFile(config: PodConfig): Promise<void> {
    const readyFile = config.readyFile!;
    for (let i = 0; !existsSync(readyFile); i++) {
      if (i >= READY_FILE_TIMEOUT_SECONDS) throw usageError(`Timeout waiting for file ${readyFile}`);
      await sleep(1000, undefined, { signal: this.controller.signal });
    }
    // The ready file may name the disk file to fetch instead of disk.img.
    const source = config.request.source;
    if (source.kind !== 'http') return;
    const name = readFileSync(readyFile, 'utf8').trim();
    if (name) source.url = source.url.replace(/disk\.img$/, '') + name;
  }

  private cancelledError(err: unknown): ImportError {
    return new ImportError('cancelled', cancelledMessage(this.stoppedBy), { cause: err });
  }

  /** What a failed run leaves must not look like a disk: CDI would hand it to the VM. */
  private removePartialTarget(config: PodConfig): void {
    const target = config.request.target;
    if (target.kind !== 'file') return;
    try {
      if (statSync(target.path).isFile()) rmSync(target.path, { force: true });
    } catch {
      // nothing there
    }
  }

  private onSignal(signal: NodeJS.Signals): void {
    if (this.controller.signal.aborted) return;
    this.stoppedBy = signal;
    this.controller.abort(new ImportError('cancelled', cancelledMessage(signal)));
    if (this.importDone) return;
    this.log.warn(`${signal} received: stopping the import`);
    // If the transfer does not stop in time, leave anyway with the same report. The timer keeps
    // the process alive on purpose: a pipeline that neither settles nor holds a handle must not
    // let Node exit quietly with code 0.
    this.stopDeadline = setTimeout(() => {
      if (this.config) this.removePartialTarget(this.config);
      runForcedExitCleanups();
      this.finish({ exitCode: 1, terminationMessage: formatFailureLine(`Unable to process data: ${cancelledMessage(signal)}`) });
      process.exit(1);
    }, STOP_GRACE_MS);
  }

  private finish(outcome: PodOutcome): void {
    if (this.messageWritten) return;
    this.messageWritten = true;
    try {
      writeTerminationMessage(this.paths.terminationLog, outcome.terminationMessage);
    } catch (err) {
      this.log.error({ err, file: this.paths.terminationLog }, 'could not write the termination message');
    }
    if (outcome.droppedLabels) {
      this.log.warn(
        { droppedLabels: outcome.droppedLabels },
        `the image's labels do not fit in the 4096-byte termination message: left out ${outcome.droppedLabels.join(', ')}`,
      );
    }
    if (outcome.exitCode === 0) this.log.info({ terminationMessage: outcome.terminationMessage }, 'done');
    else this.log.error({ terminationMessage: outcome.terminationMessage }, 'failed');
  }

  private async startMetrics(metric: ImportProgressMetric): Promise<MetricsServer | undefined> {
    try {
      return await startMetricsServer(metric, this.metricsPort(), this.log);
    } catch (err) {
      // Progress reporting is not worth failing an import for.
      this.log.warn({ error: oneLine(err) }, 'could not serve the progress metric');
      return undefined;
    }
  }

  private metricsPort(): number {
    const text = this.env[METRICS_PORT_ENV];
    if (text === undefined || text === '') return DEFAULT_METRICS_PORT;
    const port = Number(text);
    if (Number.isInteger(port) && port >= 0 && port <= 65535) return port;
    this.log.warn({ value: text }, `ignoring ${METRICS_PORT_ENV}: not a port number; using ${DEFAULT_METRICS_PORT}`);
    return DEFAULT_METRICS_PORT;
  }

  private async linger(server: MetricsServer | undefined): Promise<void> {
    const seconds = Number(this.env[METRICS_LINGER_ENV] ?? 0);
    if (!server || !(seconds > 0)) return;
    await sleep(Math.min(seconds, 60) * 1000, undefined, { signal: this.controller.signal }).catch(() => {});
  }
}

function describeSource(request: ImportRequest): string {
  const source = request.source;
  if (source.kind === 'http' || source.kind === 'registry') return source.url.replace(/\/\/[^@/]*@/, '//');
  return source.kind;
}

function touch(file: string): void {
  closeSync(openSync(file, 'a'));
}
