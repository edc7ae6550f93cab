import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Option, type Command } from 'commander';
import type { ContentType, ImportRequest, TargetSpec } from '../request.js';
import { addTransportOptions, buildTransport, type TransportFlags } from './transport-options.js';
import { checkedScratchDir, parseOverhead, parseSeconds, parseSize, parseSourceArgument, refuseBlank } from './parse-options.js';
import { parseChecksum } from '../util/checksum-spec.js';
import { runImport } from './run-import.js';
import { usageError } from '../errors.js';
import { reportFailure } from './report-failure.js';

interface ImportOptions extends TransportFlags {
  dest?: string;
  contentType: string;
  size?: string;
  filesystemOverhead?: string;
  preallocation?: boolean;
  checksum?: string;
  scratch?: string;
  json?: boolean;
  quiet?: boolean;
  progress?: boolean;
  /** false: leave flushing to the page cache (convert's default, as qemu-img convert; import --no-fsync). */
  fsync?: boolean;
  /** --timeout: seconds the whole import may take. */
  timeout?: string;
  /** convert -f / -O, as qemu-img convert takes them. */
  format?: string;
  outputFormat?: string;
  /** qemu-img convert's -S: only its default, 4k, is what we do. */
  sparseSize?: string;
  /** qemu-img convert's -m, -t and -T: checked as qemu-img checks them, then ignored. */
  m?: string;
  t?: string;
  T?: string;
  /** qemu-img convert's -n and -o: refused, with what to do instead. */
  n?: boolean;
  o?: string;
}

export function registerImportCommand(program: Command): void {
  const importCommand = program
    .command('import')
    .description('import a disk image to a file, a block device, or (archive) a directory')
    .argument('<source>', 'http(s):// URL, docker:// reference, local path, or - for stdin')
    .argument('[dest]', 'destination (same as --dest)')
    .option('-o, --dest <path>', 'file, block device, or directory for --content-type archive (default ./disk.img)')
    .option('--content-type <type>', 'kubevirt (a disk image) or archive (a tar extracted into a directory)', 'kubevirt')
    .option('--size <quantity>', 'requested volume size (10Gi, 1G, 512Mi, bytes); the image grows to fill it')
    .option('--filesystem-overhead <fraction>', 'space reserved on file targets (default 0.06 for files, 0 for block devices)')
    .option('--preallocation', 'allocate the whole target instead of writing it sparse')
    .option('--checksum <algo:hex>', 'verify the source bytes: md5, sha1, sha256 or sha512')
    .option('--scratch <dir>', 'scratch directory for qcow2 clusters that arrive before their mapping')
    .option('-f, --format <format>', 'the image format, raw or qcow2 (detected otherwise; another one is refused before writing; raw takes a text answer from a server as a disk all the same)')
    .option('--no-fsync', 'skip the fsyncs (file or device), as qemu-img convert does (faster; the data reaches the disk later)')
    // The default, taken when said (a flag carried over from convert): commander would suggest --no-fsync, the opposite.
    .addOption(new Option('--fsync').hideHelp())
    .option('--timeout <seconds>', 'give up if the import has not finished by then, removing the file it was writing (a block device keeps what was written) (default: no limit)');
  addTransportOptions(importCommand)
    .option('--json', 'print one JSON result object on stdout')
    .option('-q, --quiet', 'no progress bar and no summary line')
    .option('-p, --progress', 'show the progress bar even when stderr is not a terminal')
    .action(async (source: string, dest: string | undefined, options: ImportOptions) => {
      process.exitCode = await importAction(source, dest, options);
    });

  program
    .command('convert')
    .description('convert a local image (raw, qcow2, optionally gz/xz/zst-compressed) to a raw file, byte-identical to qemu-img convert -O raw')
    .argument('<in>', 'input path, or - for stdin')
    // Optional to commander, so that a missing one is explained (convert's -o is not import's).
    .argument('[out]', 'output raw file or block device')
    .option('--checksum <algo:hex>', 'verify the input bytes: md5, sha1, sha256 or sha512')
    .option('--scratch <dir>', "scratch directory for qcow2 clusters that arrive before their mapping (default: the output's directory)")
    .option('--fsync', 'fsync the output before finishing (qemu-img convert does not; import does unless --no-fsync)')
    // The default, taken when said (a flag carried over from import): commander would suggest --fsync, the opposite.
    .addOption(new Option('--no-fsync').hideHelp())
    .option('--json', 'print one JSON result object on stdout')
    .option('-q, --quiet', 'no progress bar and no summary line')
    .option('-p, --progress', 'show the progress bar even when stderr is not a terminal')
    // qemu-img convert's own flags, so that a CI step can swap the command and keep them.
    .option('-f, --format <format>', 'the input image format, raw or qcow2 (detected otherwise; another one is refused before writing)')
    .option('-O, --output-format <format>', 'the output format: raw, the only one (as qemu-img convert -O raw)')
    .option('-S, --sparse-size <size>', "qemu-img's sparse detection size: 4k, its default and what convert does (other sizes are refused)")
    .option('-W', 'accepted for qemu-img convert compatibility: writes are already out of order')
    .option('-m <coroutines>', 'accepted for qemu-img convert compatibility: parallel reads are sized by convert itself')
    .option('-t <cache>', 'accepted for qemu-img convert compatibility: the output cache mode (the page cache, flushed by --fsync)')
    .option('-T <cache>', 'accepted for qemu-img convert compatibility: the input cache mode')
    .option('-U', 'accepted for qemu-img convert compatibility: convert takes no lock on the input (as --force-share)')
    .option('-o <options>', "qemu-img's output options: preallocation=off, falloc or full (the whole file allocated); others are refused")
    // Taken only to be refused in words rather than as an unknown option.
    .addOption(new Option('-n').hideHelp())
    .action(async (input: string, out: string | undefined, options: ImportOptions) => {
      if (out === undefined) {
        // `convert IN -o OUT`, import's way: -o here is qemu-img's output options and took OUT.
        // Unless what -o took reads as qemu-img options (preallocation=full): then only OUT is missing.
        const hint = options.o !== undefined && !options.o.includes('=') ? ` (-o is qemu-img's output options here, as in qemu-img convert, not import's --dest: it took "${options.o}")` : '';
        process.exitCode = reportFailure(usageError(`missing the output: cdi-importer convert IN OUT${hint} (see cdi-importer convert --help)`), options.json === true);
        return;
      }
      const fsync = options.fsync === true;
      process.exitCode = await importAction(input, out, { ...options, fsync, contentType: 'kubevirt', filesystemOverhead: '0' }, true);
    });
}

/**
 * qemu-img convert's -o for a raw output: only preallocation, which a CI step may pass. off is the
 * default; falloc and full allocate the whole file (posix_fallocate, as qemu-img's falloc; full's
 * zeros read the same). Anything else is refused in words.
 */
function qemuImgPreallocation(value: string): boolean {
  let preallocate = false;
  for (const option of value.split(',')) {
    const match = /^preallocation=(off|falloc|full)$/.exec(option);
    if (!match) {
      // Quoted only when it must be: a value with spaces (or none) would not read as one.
      const shown = /^[^\s"]+$/.test(option) ? option : JSON.stringify(option);
      throw usageError(`-o ${shown} is not supported: convert writes a plain raw file and takes only -o preallocation=off, falloc or full; leave the option out, or use qemu-img convert for it`);
    }
    preallocate = match[1] !== 'off';
  }
  return preallocate;
}

/** Flags given that do nothing for this target (SPEC §6, §7): said, so nobody relies on them. */
function ignoredFlags(request: ImportRequest, options: ImportOptions): string[] {
  const notes: string[] = [];
  if (request.target.kind === 'directory') {
    if (options.preallocation) notes.push('--preallocation does not apply to an archive import (files are extracted as they are)');
    if (options.filesystemOverhead !== undefined) notes.push('--filesystem-overhead does not apply to an archive import (the space check counts the extracted bytes)');
    if (options.scratch !== undefined) notes.push('--scratch does not apply to an archive import (entries are extracted as they stream, nothing is set aside)');
  }
  if (request.target.kind === 'block' && options.filesystemOverhead !== undefined && request.filesystemOverhead !== 0) {
    notes.push('--filesystem-overhead does not apply to a block device (it has no file system to reserve space on)');
  }
  if (request.source.kind === 'file' || request.source.kind === 'stdin') {
    const network = [
      ['--user', options.user],
      ['--secret', options.secret],
      ['--ca-cert', options.caCert],
      ['--insecure', options.insecure],
      ['--header', options.header],
      ['--arch', options.arch],
      ['--stall-timeout', options.stallTimeout],
    ].filter(([, value]) => value !== undefined && value !== false);
    if (network.length > 0) notes.push(`${network.map(([flag]) => flag).join(', ')} ${network.length === 1 ? 'does' : 'do'} not apply to a local source`);
  }
  return notes;
}

/** `isConvert`: the convert command (local sources only; no free-space check, as with qemu-img convert). */
async function importAction(source: string, dest: string | undefined, options: ImportOptions, isConvert = false): Promise<number> {
  try {
    const request = await buildRequest(source, dest, options, isConvert);
    const timeoutSeconds = options.timeout !== undefined ? parseSeconds(options.timeout, '--timeout') : undefined;
    for (const flag of ignoredFlags(request, options)) {
      if (!options.quiet) process.stderr.write(`cdi-importer: note: ${flag}\n`);
    }
    return await runImport(request, { ...options, timeoutSeconds, command: isConvert ? 'convert' : 'import' });
  } catch (err) {
    return reportFailure(err, options.json === true);
  }
}

async function buildRequest(source: string, dest: string | undefined, options: ImportOptions, isConvert = false): Promise<ImportRequest> {
  if (dest && options.dest && dest !== options.dest) throw usageError(`two destinations given: ${dest} and ${options.dest}`);
  const contentType = options.contentType as ContentType;
  if (contentType !== 'kubevirt' && contentType !== 'archive') {
    throw usageError(`invalid --content-type "${options.contentType}": expected kubevirt or archive`);
  }
  // An unset shell variable ("$DEST") arrives as an empty argument.
  const destination = dest ?? options.dest;
  if (destination !== undefined) refuseBlank(destination, 'the destination', 'give a file, a block device or a directory');
  // "-" is stdin as a source; as an output it would be a file named "-", and a pipe reading it would get nothing.
  if (destination === '-') {
    throw usageError('writing the image to standard output is not supported: give an output file or block device (the raw output is written sparse, out of order)');
  }
  if (options.n) {
    throw usageError('-n is not supported: convert creates its output (a block device is written in place without it, and a file is replaced only by the finished one); leave -n out');
  }
  const preallocation = options.o !== undefined ? qemuImgPreallocation(options.o) : options.preallocation === true;
  if (options.m !== undefined && !/^([1-9]|1[0-6])$/.test(options.m)) {
    throw usageError(`invalid -m ${options.m}: the number of coroutines is between 1 and 16 (as for qemu-img convert)`);
  }
  for (const [flag, mode] of [['-t', options.t], ['-T', options.T]] as const) {
    if (mode !== undefined && !['none', 'writeback', 'unsafe', 'directsync', 'writethrough'].includes(mode)) {
      throw usageError(`invalid cache option ${flag} ${mode}: expected none, writeback, unsafe, directsync or writethrough (as for qemu-img convert)`);
    }
  }
  if (options.sparseSize !== undefined && !/^(4k|4K|4096)$/.test(options.sparseSize)) {
    throw usageError(`-S ${options.sparseSize} is not supported: convert always writes zero runs of 4 KiB or more as holes (qemu-img's default, -S 4k)`);
  }
  const transport = await buildTransport(options);
  const sourceSpec = parseSourceArgument(source, transport);
  if (isConvert && sourceSpec.kind !== 'file' && sourceSpec.kind !== 'stdin') {
    throw usageError(`convert works on local files and stdin; use "cdi-importer import ${source}" for remote sources`);
  }
  if (contentType === 'archive' && !destination) throw usageError('give the directory to extract the archive into with --dest DIR');
  if (contentType === 'archive' && options.format !== undefined) throw usageError(`-f ${options.format} names a disk image's format; an archive import extracts a tar (leave -f out)`);
  const target = await targetFor(destination ?? 'disk.img', contentType, options.fsync ?? true);
  if (options.o !== undefined && preallocation && target.kind === 'block') {
    // qemu-img refuses it for a device too ("Unsupported preallocation mode"); here it would write zeros over the whole range.
    throw usageError(`-o ${options.o} is not supported for a block device (qemu-img convert refuses it too): a device has its blocks already; leave it out`);
  }
  let scratch = options.scratch;
  if (options.outputFormat !== undefined && options.outputFormat !== 'raw') {
    throw usageError(`convert writes raw only (-O ${options.outputFormat}); for other output formats use qemu-img convert -O ${options.outputFormat}`);
  }
  if (options.format !== undefined && options.format !== 'raw' && options.format !== 'qcow2') {
    throw usageError(`invalid -f "${options.format}": expected raw or qcow2 (or leave it out: the format is detected)`);
  }
  if (isConvert && target.kind === 'file') {
    // convert is a local tool like qemu-img: no free-space check, and a qcow2 inside xz that needs
    // scratch just works, next to the output (removed with the import). import keeps CDI's rules.
    target.unbounded = true;
    scratch ??= path.dirname(path.resolve(target.path));
  }
  const isBlock = target.kind === 'block';
  return {
    source: sourceSpec,
    contentType,
    target,
    requestedSize: options.size !== undefined ? parseRequestedSize(options.size) : undefined,
    filesystemOverhead: options.filesystemOverhead !== undefined ? parseOverhead(options.filesystemOverhead) : isBlock ? 0 : 0.06,
    preallocation,
    checksum: options.checksum !== undefined ? parseChecksum(options.checksum) : undefined,
    // convert's default (the output's directory) is not checked here: a problem with it is the
    // destination's, and the destination's check names it so.
    scratchDir: options.scratch !== undefined ? await checkedScratchDir(options.scratch) : scratch,
    expectedFormat: options.format as ImportRequest['expectedFormat'],
  };
}

async function targetFor(destination: string, contentType: ContentType, sync: boolean): Promise<TargetSpec> {
  const info = await stat(destination).catch(() => undefined);
  if (info?.isBlockDevice()) return { kind: 'block', path: destination, sync };
  if (contentType === 'archive') return { kind: 'directory', path: destination };
  return { kind: 'file', path: destination, atomic: true, localMode: true, sync };
}

/** --size: a volume of 0 bytes holds no image; it is a mistake, not a request. */
function parseRequestedSize(text: string): number {
  const size = parseSize(text);
  if (size === 0) throw usageError(`--size ${text} is no volume: give the requested size (e.g. 10Gi), or leave --size out to keep the image's own size`);
  return size;
}
