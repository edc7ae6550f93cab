/**
 * `cdi-importer info <source> [--json]`: what an import would see, without writing anything —
 * the format chain (xz → qcow2), the virtual size, the qcow2 header facts (named like
 * `qemu-img info --output=json`), and whether a one-pass import would need scratch space.
 */
import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { DETECTION_BYTES, detectFormat, importRefusal, isUnsupportedCompression, isUnsupportedDiskFormat } from '../formats/magic.js';
import { unwrapCompression } from '../formats/unwrap.js';
import { declaredUncompressedSize, fixedVhdRefusal, isFixedVhd, knownRawLength, rawVirtualSize, VHD_FOOTER_SIZE } from '../formats/raw-image.js';
import { openSource } from '../sources/resolve-source.js';
import { onStopSignals } from '../util/stop-signals.js';
import type { OpenedSource } from '../sources/source.js';
import type { SourceSpec } from '../request.js';
import { abortedError, causedBySourceChange, fromSource, ImportError, sourceChangeReason } from '../errors.js';
import { inspectQcow2, inspectQcow2Stream, type Qcow2Info } from '../qcow2/index.js';
import { escapeC1, quoteText } from '../util/quote-text.js';
import { formatBytes } from '../util/quantity.js';
import { addTransportOptions, buildTransport, type TransportFlags } from './transport-options.js';
import { parseSourceArgument } from './parse-options.js';
import { reportFailure, EXIT_OK } from './report-failure.js';

interface InfoOptions extends TransportFlags {
  json?: boolean;
  /** Undefined: measure only where an import would read the image in one pass (see inspectSource). */
  scan?: boolean;
}

interface ImageInfo {
  /** A qcow2's internal snapshots, first as in qemu-img's output. */
  snapshots?: Qcow2Info['snapshots'];
  'backing-filename-format'?: string;
  filename: string;
  format: string;
  'format-chain': string[];
  /** Unknown for raw data inside a compressed stream (its length shows only at the end). */
  'virtual-size'?: number;
  /** qemu-img's keys, at the top as it puts them: bytes the local file occupies, and a qcow2's header facts. */
  'actual-size'?: number;
  'cluster-size'?: number;
  'dirty-flag'?: boolean;
  'format-specific'?: Qcow2Info['format-specific'];
  /** The backing file as qemu-img would look for it: next to a local image (never opened here). */
  'full-backing-filename'?: string;
  'backing-filename'?: string;
  encrypted?: true;
  /** Why an import refuses this image, in the words it fails with; absent when it imports. */
  'import-refused'?: string;
  /** For qcow2: how an import reads it (random access never needs scratch space). */
  'import-reads'?: 'random-access' | 'one-pass';
  qcow2?: Qcow2Info;
}

export function registerInfoCommand(program: Command): void {
  const infoCommand = program
    .command('info')
    .description('show the format chain, virtual size and qcow2 details of an image (like qemu-img info), without writing')
    .argument('<source>', 'http(s):// URL, docker:// reference, local path, or - for stdin')
    .option('--json', 'print one JSON object on stdout')
    .option('--scan', 'read every byte: the scratch space a one-pass qcow2 import needs (default for a qcow2 an import reads in one pass: inside gz/xz/zst, on stdin, over HTTP without Range), the size of a gzip or zstd raw image (a seekable .xz says its size in its index)')
    .option('--no-scan', 'read only the headers');
  addTransportOptions(infoCommand).action(async (source: string, options: InfoOptions) => {
      try {
        const info = await inspectSource(source, options);
        // Names from the image are its author's text: JSON escapes the C0 controls, escapeC1 the rest.
        process.stdout.write(options.json ? `${escapeC1(JSON.stringify({ ...info, format: qemuImgFormatName(info.format) }))}\n` : formatInfo(info));
        process.exitCode = EXIT_OK;
      } catch (err) {
        process.exitCode = reportFailure(err, options.json === true);
      }
    });
}

async function inspectSource(sourceText: string, options: InfoOptions): Promise<ImageInfo> {
  const spec = parseSourceArgument(sourceText, await buildTransport(options));
  try {
    return await inspectOnce(spec, options);
  } catch (err) {
    if (spec.kind !== 'http' || !causedBySourceChange(err)) throw err;
    // As an import does: a server whose answers do not make one file by Range (it stopped
    // honouring Range, or its replicas disagree) is read again as one download of the whole file.
    process.stderr.write(`cdi-importer: ${sourceChangeReason(err)}; reading it again with one download of the whole file\n`);
    // Only the headers unless --scan was given: measuring a one-pass import would download it all.
    return inspectOnce({ ...spec, wholeFile: true }, { ...options, scan: options.scan ?? false });
  }
}

async function inspectOnce(spec: SourceSpec, options: InfoOptions): Promise<ImageInfo> {
  const controller = new AbortController();
  // Ctrl-C while a slow server answers: one line, and the Range reads and sockets closed.
  const stopHandlingSignals = onStopSignals((signal) => controller.abort(new ImportError('cancelled', `info cancelled: received ${signal}`)));
  let opened: OpenedSource | undefined;
  let filename: string | undefined;
  try {
    const started = await openSource(spec, controller.signal);
    opened = started.opened;
    filename = started.source.description;
    // A seekable qcow2 is read the way an import reads it: by random access.
    let declared: number | undefined;
    if (opened.randomAccess) {
      const head = await opened.randomAccess.read(0, DETECTION_BYTES);
      declared = await declaredUncompressedSize(head, opened);
      if (detectFormat(head) === 'qcow2') {
        opened.stream.destroy();
        // An import reads this qcow2 by random access and needs no scratch. Measuring what a
        // one-pass import would need reads every byte (seconds for a large local file, a whole
        // download over HTTP), so info stays as quick as qemu-img info unless --scan asks.
        const qcow2 = await inspectQcow2(opened.randomAccess, { scan: options.scan ?? false, signal: controller.signal });
        const local = spec.kind === 'file' ? spec.path : undefined;
        return { ...qemuImgKeys(qcow2, filename, await actualSize(spec), local), 'format-chain': ['qcow2'], 'import-reads': 'random-access', qcow2 };
      }
    }
    const { chain, format, stream } = await unwrapCompression(opened.stream, filename, 'no image to describe');
    if (format === 'qcow2') {
      const qcow2 = await inspectQcow2Stream(stream, { scan: options.scan, signal: controller.signal });
      return { ...qemuImgKeys(qcow2, filename, undefined, undefined), 'format-chain': chain, 'import-reads': 'one-pass', qcow2 };
    }
    // A fixed-size VHD looks raw from its start; import refuses it by its footer: described as the
    // VHD it is, refused as a dynamic one is.
    const size = opened.randomAccess?.size;
    if (format === 'raw' && chain.length === 1 && size !== undefined && size >= VHD_FOOTER_SIZE) {
      if (isFixedVhd(await opened.randomAccess!.read(size - VHD_FOOTER_SIZE, VHD_FOOTER_SIZE))) {
        return { filename, format: 'vhd', 'format-chain': ['vhd'], 'actual-size': await actualSize(spec), 'import-refused': fixedVhdRefusal(filename).message };
      }
    }
    const info: ImageInfo = { filename, format, 'format-chain': chain };
    // What import refuses (a web page, .lzma or bzip2 data, a disk format it does not convert): said
    // in its words, for a script as for a reader.
    const refusal = importRefusal(filename, format);
    if (refusal !== undefined) info['import-refused'] = refusal;
    // qemu-img reports what the file occupies for the file it reads; for a compressed one that is not the image.
    if (chain.length === 1) {
      info['actual-size'] = await actualSize(spec);
      if (format === 'raw' || format === 'iso') info['dirty-flag'] = false; // as qemu-img says of a raw file
    }
    const known = format === 'raw' || format === 'iso' ? knownRawLength(chain, opened.size, declared) : undefined;
    if ((format === 'raw' || format === 'iso') && options.scan === true) {
      // Every byte, as --scan says: a compressed (or streamed) raw's size is the bytes inside, and
      // what a source checks only at its end (a registry image's layers below the disk: no second
      // disk) is checked, as an import would.
      let bytes = 0;
      for await (const chunk of stream) bytes += (chunk as Buffer).length;
      info['virtual-size'] = rawVirtualSize(known ?? bytes);
    } else if (known !== undefined) {
      info['virtual-size'] = rawVirtualSize(known);
    }
    stream.destroy();
    return info;
  } catch (err) {
    // A stream stopped by Ctrl-C fails with whatever its reader says; the cancel is the story.
    throw abortedError(filename !== undefined ? fromSource(err, filename) : err, controller.signal);
  } finally {
    stopHandlingSignals();
    controller.abort();
    opened?.stream.destroy();
    await opened?.randomAccess?.close().catch(() => {});
  }
}

/**
 * A qcow2's facts under the keys and in the order `qemu-img info --output=json` uses, so a script
 * written for it reads them here too (`qcow2` below repeats them with our additions).
 */
function qemuImgKeys(qcow2: Qcow2Info, filename: string, actual: number | undefined, localPath: string | undefined): Omit<ImageInfo, 'format-chain'> {
  const backing = qcow2['backing-filename'];
  return {
    snapshots: qcow2.snapshots,
    'backing-filename-format': qcow2['backing-filename-format'],
    'virtual-size': qcow2['virtual-size'],
    filename,
    'cluster-size': qcow2['cluster-size'],
    format: 'qcow2',
    ...(actual === undefined ? {} : { 'actual-size': actual }),
    'format-specific': qcow2['format-specific'],
    'full-backing-filename': backing !== undefined && localPath !== undefined ? besideImage(localPath, backing) : undefined,
    'backing-filename': backing,
    encrypted: qcow2.encrypted,
    'dirty-flag': qcow2['dirty-flag'],
    'import-refused': qcow2['import-refused'],
  };
}

/** qemu's path_combine: a relative backing name is taken from the image's directory, as the path was given. */
function besideImage(imagePath: string, name: string): string {
  const colon = name.indexOf(':');
  if (name.charAt(colon + 1) === '/') return name; // qemu's path_is_absolute (after a "protocol:" prefix)
  return imagePath.slice(0, imagePath.lastIndexOf('/') + 1) + name;
}

/** Bytes a local regular file occupies (qemu-img's actual-size); undefined for other sources. */
async function actualSize(spec: SourceSpec): Promise<number | undefined> {
  if (spec.kind !== 'file') return undefined;
  const info = await stat(spec.path).catch(() => undefined);
  return info?.isFile() ? info.blocks * 512 : undefined;
}

/**
 * `format` as qemu-img info names it: an ISO is raw to it, a VHD is its vpc driver's. `format-chain`
 * keeps our names.
 */
function qemuImgFormatName(format: string): string {
  return format === 'iso' ? 'raw' : format === 'vhd' ? 'vpc' : format;
}

function formatInfo(info: ImageInfo): string {
  const rows: [string, string][] = [
    ['source', info.filename],
    ['format chain', info['format-chain'].join(' → ')],
  ];
  // A tar archive or an HTML page is no disk, LZMA-alone data is not decoded, and the headers of
  // formats import refuses are not read: no virtual size.
  if (info.format !== 'html' && info.format !== 'tar' && !isUnsupportedCompression(info.format) && !isUnsupportedDiskFormat(info.format)) {
    rows.push(['virtual size', info['virtual-size'] !== undefined ? `${formatBytes(info['virtual-size'])} (${info['virtual-size']} bytes)` : 'unknown until the stream is read']);
  }
  if (info['import-refused'] !== undefined && !info.qcow2) rows.push(['import', `refused: ${info['import-refused']}`]);
  if (info.format === 'tar') rows.push(['note', 'a tar archive, not a disk image: import --content-type archive -o DIR extracts its files']);
  const q = info.qcow2;
  if (q) {
    const data = q['format-specific'].data;
    rows.push(
      ['cluster size', `${q['cluster-size']}`],
      ['compat', data.compat],
      ['compression type', data['compression-type']],
      ['extended L2', data['extended-l2'] ? 'yes' : 'no'],
      ['snapshots', `${q['snapshot-count']}${q['snapshot-count'] > 0 ? ' (only the active layer is imported)' : ''}`],
      ...(data.bitmaps ? [['dirty bitmaps', `${data.bitmaps.map((b) => quoteText(b.name)).join(', ')} (not imported, as with qemu-img convert)`] as [string, string]] : []),
      ['dirty', q['dirty-flag'] ? 'yes (refcounts stale; data is read normally)' : 'no'],
    );
    // What an import refuses, as qemu-img info shows it; names quoted (the image's author wrote them).
    if (q['backing-filename'] !== undefined) rows.push(['backing file', quoteText(q['backing-filename'])]);
    if (q['backing-filename-format'] !== undefined) rows.push(['backing file format', quoteText(q['backing-filename-format'])]);
    if (q.encrypted) rows.push(['encrypted', `yes${data.encrypt ? ` (${data.encrypt.format})` : ''}`]);
    if (data['data-file'] !== undefined) rows.push(['data file', quoteText(data['data-file'])]);
    if (data['data-file-raw'] !== undefined) rows.push(['data file raw', data['data-file-raw'] ? 'yes' : 'no']);
    if (data.corrupt) rows.push(['corrupt', 'yes']);
    if (q['import-refused'] !== undefined) rows.push(['import', `refused: ${q['import-refused']}`]);
    // A refused image stops at its header: no scratch to speak of.
    const scratch = q['one-pass-scratch-bytes'];
    if (q['import-refused'] === undefined && scratch === undefined && info['import-reads'] === 'random-access') {
      rows.push(['one-pass scratch', 'not measured; an import reads this image at random offsets and needs none (with --checksum it is read in one pass: --scan measures what that needs)']);
    } else if (scratch !== undefined) {
      const atLeast = q['one-pass-scratch-bytes-at-least'] ? 'at least ' : '';
      rows.push(['one-pass scratch', scratch === 0 ? 'none needed' : `${atLeast}${formatBytes(scratch)} (${scratch} bytes) needed when the source cannot seek`]);
    }
  }
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}\n`).join('');
}
