/**
 * `cdi-importer upload-server`: CDI's upload server (SPEC §5.3). Configured by CDI's environment
 * variables, like the pod it replaces; see src/upload/.
 */
import type { Command } from 'commander';

/** After the outcome is reported, anything still holding the process open gets this long. */
const EXIT_GRACE_MS = 5_000;

export function registerUploadServerCommand(program: Command): void {
  program
    .command('upload-server')
    .description(
      "serve one upload over HTTPS the way CDI's cdi-uploadserver does; configured by its environment: " +
        'TLS_CERT_FILE, TLS_KEY_FILE, CLIENT_CERT_FILE, CLIENT_NAME (required), DESTINATION, UPLOAD_IMAGE_SIZE, ' +
        'FILESYSTEM_OVERHEAD, PREALLOCATION, DEADLINE, LISTEN_ADDRESS, LISTEN_PORT, HEALTHZ_PORT',
    )
    .action(async () => {
      const { runUploadServer } = await import('../upload/index.js');
      const code = await runUploadServer();
      process.exitCode = code;
      // A pipeline stopped by the deadline or a signal may still hold a handle; do not hang on it.
      setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
    });
}
