/**
 * `cdi-importer upload-server`: CDI's upload server (SPEC §5.3). Configured by CDI's environment
 * variables, like the pod it replaces; see src/upload/.
 */
import type { Command } from 'commander';
import { isImportError } from '../errors.js';
import { podPaths } from '../pod/paths.js';
import { reportFailure } from './report-failure.js';

export function registerUploadServerCommand(program: Command): void {
  program
    .command('upload-server')
    .description(
      "serve one upload over HTTPS the way CDI's cdi-uploadserver does; configured by its environment: " +
        'TLS_CERT_FILE, TLS_KEY_FILE, CLIENT_CERT_FILE, CLIENT_NAME (required), DESTINATION, UPLOAD_IMAGE_SIZE, ' +
        'FILESYSTEM_OVERHEAD, PREALLOCATION, DEADLINE, LISTEN_ADDRESS, LISTEN_PORT, HEALTHZ_PORT',
    )
    .action(async () => {
      const { parseUploadEnvironment, runUploadServerAndExit } = await import('../upload/index.js');
      // At a terminal a missing or bad variable is a usage error, said in one line (exit 2) rather than
      // in the JSON log and termination message of the pod (which starts with no command, as CDI's does).
      let config;
      try {
        config = parseUploadEnvironment(process.env, podPaths(process.env));
      } catch (err) {
        if (!isImportError(err) || err.category !== 'usage') throw err;
        process.exitCode = reportFailure(err, false);
        return;
      }
      process.exitCode = await runUploadServerAndExit({ config });
    });
}
