import { Command, CommanderError } from 'commander';
import { registerImportCommand } from './cli/import-command.js';
import { registerDatavolumeCommand } from './cli/datavolume-command.js';
import { registerInfoCommand } from './cli/info-command.js';
import { registerUploadServerCommand } from './cli/upload-server-command.js';
import { EXIT_USAGE } from './cli/report-failure.js';
import { holdStopSignals } from './util/stop-signals.js';
import { fileProblem, oneLine } from './errors.js';

const SUBCOMMANDS = new Set(['import', 'convert', 'info', 'datavolume', 'upload-server', 'help']);

/**
 * `cdi-importer <command>` is the local CLI (SPEC §8); with no subcommand it is the CDI importer
 * pod entrypoint (SPEC §4), which also accepts klog-style flags such as -v=1.
 */
export async function main(argv: string[]): Promise<number> {
  // Until the command has its own handler, a stop is remembered rather than fatal (util/stop-signals).
  holdStopSignals();
  // A reader that went away (`… --json | true`) is not the import's failure: what it did stands.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') return;
    // The report could not be delivered (stdout on a full disk): say so, once, where it can be read.
    const words = fileProblem(err);
    const code = err.code && !words.includes(err.code) ? ` (${err.code})` : '';
    process.stderr.write(`cdi-importer: error: cannot write to standard output: ${words}${code}\n`);
    stdoutFailed = true;
    process.exitCode = 1;
  });
  // Nor is a closed stderr (`2> >(head -c 10)`, a log collector gone): the messages are lost, the
  // import goes on (its outcome is the exit code). Any other stderr failure has nowhere to be said.
  process.stderr.on('error', () => {});
  const first = argv[2];
  const wantsHelp = first === '--help' || first === '-h' || first === '--version' || first === '-V';
  // `help bogus`: commander prints the whole help and exits 2 without saying what was wrong.
  if (first === 'help' && argv[3] !== undefined && !argv[3].startsWith('-') && !SUBCOMMANDS.has(argv[3])) return usage(`no help for "${argv[3]}": unknown command${suggestion(argv[3])}`, argv);
  if (!wantsHelp && (first === undefined || !SUBCOMMANDS.has(first))) {
    // Pod mode's arguments are klog flags, which start with a dash: a bare word is a command
    // mistyped, not a pod. Without IMPORTER_SOURCE (which CDI's controller always sets), at a
    // terminal or outside Kubernetes (no KUBERNETES_SERVICE_HOST), nobody meant pod mode either:
    // it would write /dev/termination-log on the host.
    if (first !== undefined && !first.startsWith('-')) return usage(`unknown command "${first}"${suggestion(first)}`, argv);
    const upload = await import('./upload/index.js');
    if (upload.isUploadPodEnvironment(process.env)) return upload.runUploadPod(argv.slice(2));
    // With klog flags too (`cdi-importer -v=1`): only a pod passes them.
    if (process.env.IMPORTER_SOURCE === undefined && (process.stdin.isTTY || !process.env.KUBERNETES_SERVICE_HOST)) {
      return usage('no command given, and IMPORTER_SOURCE is not set for pod mode', argv);
    }
    const { runPodMode } = await import('./pod/index.js');
    return runPodMode(argv.slice(2));
  }
  const program = new Command()
    .name('cdi-importer')
    .description(
      'Import virtual machine disk images (raw, qcow2, ISO; gz/xz/zst-compressed; tar archives) from files, stdin, ' +
        'HTTP(S) and registries onto files and block devices. With no command: the KubeVirt CDI importer pod.',
    )
    .version('0.1.0')
    .exitOverride()
    // One line, as every other failure: commander's own words (its "(Did you mean …?)" comes on a
    // line of its own), prefixed, with where help is.
    .configureOutput({ outputError: (text, write) => write(`cdi-importer: ${oneLine(text)} (see cdi-importer --help)\n`) });
  registerImportCommand(program);
  registerDatavolumeCommand(program);
  registerInfoCommand(program);
  registerUploadServerCommand(program);
  // A command's mistakes point to that command's help, which lists its options.
  for (const command of program.commands) {
    command.configureOutput({ outputError: (text, write) => write(`cdi-importer: ${oneLine(text)} (see cdi-importer ${command.name()} --help)\n`) });
  }
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has printed its line on stderr; a CI step that asked for JSON still gets an object.
      if (err.exitCode !== 0 && argv.includes('--json')) {
        process.stdout.write(`${JSON.stringify({ ok: false, category: 'usage', error: oneLine(err.message).replace(/^error: /, '') })}\n`);
      }
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    throw err;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

/** A command line that names no command: the same `error:` line, and JSON object, as commander's findings. */
function usage(problem: string, argv: string[]): number {
  const commands = [...SUBCOMMANDS].filter((c) => c !== 'help').join(', ');
  const error = `${problem}; commands: ${commands}`;
  process.stderr.write(`cdi-importer: error: ${error} (see cdi-importer --help)\n`);
  if (argv.includes('--json')) process.stdout.write(`${JSON.stringify({ ok: false, category: 'usage', error })}\n`);
  return EXIT_USAGE;
}

/** ` (did you mean import?)` for a command one or two edits away, in any case. */
function suggestion(word: string): string {
  const near = [...SUBCOMMANDS].find((command) => editDistance(command, word.toLowerCase()) <= 2);
  return near ? ` (did you mean ${near}?)` : '';
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

let settled = false;
let stdoutFailed = false;
// A command stalled on a promise that no event can settle would let Node end with exit 0 and no
// word (no result, no termination message): fail instead.
process.once('beforeExit', () => {
  if (settled) return;
  process.stderr.write('cdi-importer: internal error: the command stopped before it finished (it waits for nothing that can still happen); nothing was completed\n');
  process.exitCode = 1;
});

main(process.argv).then(
  (code) => {
    settled = true;
    process.exitCode = stdoutFailed ? 1 : code;
  },
  (err) => {
    settled = true;
    process.stderr.write(`cdi-importer: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    if (process.env.CDI_IMPORTER_DEBUG === '1') process.stderr.write(`${(err as Error).stack}\n`);
    process.exitCode = 1;
  },
);
