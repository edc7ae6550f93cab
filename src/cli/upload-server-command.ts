/**
 * `cdi-importer upload-server`: CDI's upload server (SPEC §5.3). Configured by CDI's environment
 * variables, like the pod it replaces; see src/upload/.
 */
import type { Command } from 'commander';

export function registerUploadServerCommand(program: Command): void {
  program
    .command('upload-server')
    .description(
      "serve one upload over HTTPS the way CDI's cdi-uploadserver does; configured by its environment: " +
        'TLS_CERT_FILE, TLS_KEY_FILE, CLIENT_CERT_FILE, CLIENT_NAME (required), DESTINATION, UPLOAD_IMAGE_SIZE, ' +
        'FILESYSTEM_OVERHEAD, PREALLOCATION, DEADLINE, LISTEN_ADDRESS, LISTEN_PORT, HEALTHZ_PORT',
    )
    .action(async () => {
      const { runUploadServerAndExit } = await import('../upload/index.js');
      process.exitCode = await runUploadServerAndExit();
    });
}
