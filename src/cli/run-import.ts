import type { ImportRequest, ImportResult, Logger } from '../request.js';
import { importImage } from '../pipeline/import-image.js';
import { IMPORT_CANCELLED, ImportError, isImportError } from '../errors.js';
import { ProgressBar } from './progress-bar.js';
import { reportFailure, tooSmallHint, type ImportCommand } from './report-failure.js';
import { formatBytes, formatPercent } from '../util/quantity.js';
import { usableSpace } from '../targets/usable-space.js';
import { runForcedExitCleanups } from '../util/forced-exit.js';
import { onStopSignals } from '../util/stop-signals.js';
import { escapeControls } from '../util/quote-text.js';

export interface OutputOptions {
  json?: boolean;
  quiet?: boolean;
  progress?: boolean;
  /** The whole import's deadline (--timeout); none by default. */
  timeoutSeconds?: number;
  /** The command running the import (default import), for what a failure suggests. */
  command?: ImportCommand;
  /** Put first in the --json object, success or failure (datavolume: the volume's name). */
  jsonFields?: Record<string, unknown>;
}

/**
 * Runs one import for a CLI command and speaks the CLI's dialect: a progress bar on a terminal,
 * a summary line or one JSON object, exit code 0/1/2. Ctrl-C, SIGTERM and SIGHUP (the terminal closed)
 * cancel cleanly; a second
 * one exits at once. `run` is the pipeline (tests give one that ignores its abort signal).
 */
export async function runImport(request: ImportRequest, output: OutputOptions, run: typeof importImage = importImage): Promise<number> {
  const showProgress = !output.quiet && (output.progress ?? process.stderr.isTTY === true);
  const bar = showProgress ? new ProgressBar() : undefined;
  const controller = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const cancel = (signal: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      stoppedBy = signal;
      controller.abort();
      return;
    }
    // A second Ctrl-C: the user wants out now, not after the pipeline unwinds. Remove what this
    // import created (the hidden .partial file, a scratch spill, extracted entries), then leave.
    bar?.done();
    runForcedExitCleanups();
    const message = 'stopped at once on a second interrupt; its temporary files were removed';
    // Writes to a pipe or file are synchronous here: the object is out before the exit.
    if (output.json) process.stdout.write(`${JSON.stringify({ ...output.jsonFields, ok: false, category: 'cancelled', error: message })}\n`);
    process.stderr.write(`cdi-importer: ${message}\n`);
    process.exit(1);
  };
  const stopHandlingSignals = onStopSignals(cancel);
  const deadline =
    output.timeoutSeconds !== undefined
      ? setTimeout(() => {
          controller.abort(new ImportError('cancelled', `the import did not finish within ${output.timeoutSeconds} s (--timeout): give a longer --timeout, or none for no limit`));
        }, output.timeoutSeconds * 1000)
      : undefined;
  const started = Date.now();
  try {
    const result = await run(request, { signal: controller.signal, progress: bar?.update, log: noticeLogger(bar) });
    bar?.done();
    if (output.json) process.stdout.write(`${JSON.stringify({ ...output.jsonFields, ...jsonResult(result, request, Date.now() - started) })}\n`);
    // A destination named with a line break or an escape sequence must neither split the line nor act on the terminal.
    else if (!output.quiet) process.stderr.write(`${escapeControls(summary(result, request, Date.now() - started, output.command ?? 'import'))}\n`);
    return 0;
  } catch (err) {
    bar?.done();
    // Ctrl-C at a terminal signals the whole pipeline (curl … | cdi-importer import -): the command
    // feeding us may die first, and its end reach us as truncated data before our own SIGINT. A
    // moment's wait lets that signal say what happened.
    if (!controller.signal.aborted && (request.source.kind === 'stdin' || (isImportError(err) && err.category === 'bad-input'))) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // A signal is the story, whatever the pipeline failed with as it unwound: said as the step it
    // stopped (an archive extraction says so itself) or the command the user ran (convert is a
    // conversion), naming the signal as pod mode's message does.
    const cancelled = controller.signal.aborted && !(controller.signal.reason instanceof ImportError);
    const ownLine = isImportError(err) && err.category === 'cancelled' && err.message !== IMPORT_CANCELLED ? err.message : undefined;
    const said = ownLine ?? `${output.command === 'convert' ? 'conversion' : 'import'} cancelled`;
    const failure = cancelled ? new ImportError('cancelled', `${said}${stoppedBy ? `: received ${stoppedBy}` : ''}`, { cause: err }) : err;
    return reportFailure(failure, output.json === true, tooSmallHint(request, output.command ?? 'import', failure), output.jsonFields);
  } finally {
    clearTimeout(deadline);
    stopHandlingSignals();
  }
}

function jsonResult(result: ImportResult, request: ImportRequest, elapsedMs: number) {
  return { ok: true, destination: request.target.path, ...result, elapsedSeconds: elapsedMs / 1000 };
}

function summary(result: ImportResult, request: ImportRequest, elapsedMs: number, command: ImportCommand): string {
  const seconds = (elapsedMs / 1000).toFixed(1);
  if (result.archive) {
    const a = result.archive;
    const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
    // Entries left out on purpose (SPEC §6: unknown types, volume labels) are said, not only listed in --json.
    const shown = a.skipped.slice(0, 3).join('; ') + (a.skipped.length > 3 ? '; …' : '');
    const skipped = a.skipped.length > 0 ? `; ${count(a.skipped.length, 'entry', 'entries')} skipped (${shown})` : '';
    return `Extracted ${result.formats.join(' → ')} into ${request.target.path}: ${count(a.files, 'file', 'files')}, ${count(a.directories, 'directory', 'directories')}, ${count(a.links, 'link', 'links')}, ${formatBytes(a.bytes)} in ${seconds}s${skipped}`;
  }
  const grown = sizeNote(result, request, command === 'datavolume' ? 'the storage request' : '--size');
  const scratch = result.scratchBytesUsed ? `, ${formatBytes(result.scratchBytesUsed)} scratch` : '';
  const verb = command === 'convert' ? 'Converted' : 'Imported';
  return `${verb} ${result.formats.join(' → ')} (${formatBytes(result.virtualSize)}) to ${request.target.path}${grown}${scratch} in ${seconds}s`;
}

/** What the summary says of the target's size beside the image's: a device as it is, a file as grown. */
function sizeNote(result: ImportResult, request: ImportRequest, sizeLabel: string): string {
  // A block device is not grown: its size is what it is, and what lies past the image is left alone.
  if (request.target.kind === 'block') {
    return ` (a ${formatBytes(result.targetSize)} device${request.requestedSize !== undefined ? `; ${sizeLabel} does not apply: block devices are not resized` : ''})`;
  }
  if (result.targetSize > result.virtualSize) return `, grown to ${formatBytes(result.targetSize)}${capped(result, request, sizeLabel)}`;
  // A blank disk is made at its final size: still worth saying when that is less than was asked.
  return request.source.kind === 'blank' ? capped(result, request, sizeLabel) : '';
}

/** Warnings (a download retried) as lines on stderr, above the progress bar; nothing else. */
function noticeLogger(bar: ProgressBar | undefined): Logger {
  const ignore = () => {};
  return {
    debug: ignore,
    info: ignore,
    warn: (fields, message) => {
      const line = `cdi-importer: ${message ?? (typeof fields === 'string' ? fields : JSON.stringify(fields))}`;
      if (bar) bar.note(line);
      else process.stderr.write(`${line}\n`);
    },
  };
}

/** Says why a file was grown to less than --size asked for: the overhead reserve, or the free space. */
function capped(result: ImportResult, request: ImportRequest, sizeLabel: string): string {
  const asked = request.requestedSize;
  if (asked === undefined || result.targetSize >= asked) return '';
  // Exact bytes when rounding for display would blur what was rounded down (1G = 953.7 MiB).
  const askedText = asked % (1 << 20) === 0 ? formatBytes(asked) : `${asked} bytes`;
  if (result.targetSize === usableSpace(asked, request.filesystemOverhead)) {
    return request.filesystemOverhead > 0
      ? ` (${sizeLabel} ${askedText} less the ${formatPercent(request.filesystemOverhead)} --filesystem-overhead)`
      : ` (${sizeLabel} ${askedText} rounded down to whole MiB)`;
  }
  return ` (${sizeLabel} asked for ${askedText}; the free space allows no more)`;
}
