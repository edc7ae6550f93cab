/**
 * `cdi-importer upload-server`: a drop-in for CDI's `cdi-uploadserver` (SPEC §5.3). Reads the
 * environment, serves one upload, and reports through the exit code and the termination message
 * (`/dev/termination-log`, under CDI_IMPORTER_ROOT like pod mode).
 */
import { oneLine } from '../errors.js';
import { createLogger, type AppLogger } from '../util/logger.js';
import { podPaths } from '../pod/paths.js';
import { formatFailureLine, formatTerminationJson, writeTerminationMessage } from '../pod/termination-message.js';
import { parseUploadEnvironment, type UploadConfig } from './upload-environment.js';
import { UploadServer, type ImportFunction, type UploadOutcome } from './upload-server.js';

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

  let config: UploadConfig;
  let server: UploadServer;
  try {
    config = parseUploadEnvironment(env, paths);
    const importImage = options.importImage ?? (await import('../pipeline/import-image.js')).importImage;
    server = new UploadServer(config, log, importImage);
    await server.start();
  } catch (err) {
    return report(1, formatFailureLine(`UploadServer failed: ${oneLine(err)}`));
  }

  const onSignal = (signal: NodeJS.Signals) => server.stop(signal);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const outcome = await server.outcome;
    const { exitCode, message } = outcomeReport(outcome);
    report(exitCode, message);
    if (outcome.kind === 'complete' && config.lingerSeconds > 0) {
      // Keep answering (409 to further uploads) for a while; a signal ends the wait.
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          process.off('SIGTERM', done);
          process.off('SIGINT', done);
          resolve();
        };
        const timer = setTimeout(done, config.lingerSeconds * 1000);
        process.on('SIGTERM', done);
        process.on('SIGINT', done);
      });
    }
    await server.close();
    return exitCode;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
