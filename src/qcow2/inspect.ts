/**
 * Facts about a qcow2 image for `cdi-importer info`, named like `qemu-img info --output=json`
 * where they overlap, plus what a one-pass import would need in scratch space (measured by
 * running the one-pass driver over the bytes without producing data or writing anything).
 */
import { Readable } from 'node:stream';
import type { RandomAccessReader } from '../sources/source.js';
import type { Qcow2Header } from './header.js';
import { openQcow2Stream } from './one-pass.js';
import { SpillBudgetExceeded } from './spill-file.js';
import { readQcow2Header } from './random-access.js';
import { readSnapshotTable, type SnapshotInfo } from './snapshot-table.js';
import { readBitmapDirectory, type BitmapInfo } from './bitmap-directory.js';

/** Memory the measurement may hold for clusters a real one-pass run would spill. */
const MEASURE_BUDGET = 128 << 20;
const READ_CHUNK = 1 << 20;

export interface Qcow2Info {
  format: 'qcow2';
  /** qemu-img's backing keys; the names are the image's own text, cut short (never read). */
  'backing-filename-format'?: string;
  'backing-filename'?: string;
  'virtual-size': number;
  'cluster-size': number;
  'dirty-flag': boolean;
  /** Internal snapshots (an import reads only the active layer). */
  'snapshot-count': number;
  /** qemu-img's list of them, when the table was read (random access) and reads as qemu reads it. */
  snapshots?: SnapshotInfo[];
  'format-specific': {
    type: 'qcow2';
    data: {
      compat: '0.10' | '1.1';
      'compression-type': 'zlib' | 'zstd';
      /** Version 3 only, as qemu-img shows them (version 2 has no such header fields). */
      'lazy-refcounts'?: boolean;
      /** Persistent dirty bitmaps, as qemu-img lists them, when the directory was read (random access); never imported. */
      bitmaps?: BitmapInfo[];
      'refcount-bits': number;
      /** qemu-img shows the LUKS header's details too; only the format is read here. */
      encrypt?: { format: 'aes' | 'luks' };
      'data-file'?: string;
      'data-file-raw'?: boolean;
      corrupt?: boolean;
      'extended-l2'?: boolean;
    };
  };
  encrypted?: true;
  /** Why an import refuses the image (a backing file, encryption, an external data file, the corrupt bit). */
  'import-refused'?: string;
  /** Present when the bytes were scanned: scratch a one-pass import needs (0 = none). */
  'one-pass-scratch-bytes'?: number;
  /** True when the scan stopped at its memory budget: the real need is at least the value above. */
  'one-pass-scratch-bytes-at-least'?: boolean;
}

/** The header's facts, in the order qemu-img info puts them (absent keys are left out of JSON). */
export function describeHeader(header: Qcow2Header, bitmaps?: BitmapInfo[]): Qcow2Info {
  const encrypt = header.encryption === 'aes' || header.encryption === 'luks' ? { format: header.encryption } : undefined;
  const dataFile = { 'data-file': header.dataFile, 'data-file-raw': header.dataFileRaw };
  return {
    format: 'qcow2',
    'backing-filename-format': header.backingFormat,
    'backing-filename': header.backingFile,
    'virtual-size': header.virtualSize,
    'cluster-size': header.clusterSize,
    'dirty-flag': header.dirty,
    'snapshot-count': header.snapshotCount,
    'format-specific': {
      type: 'qcow2',
      data:
        header.version === 2
          ? { compat: '0.10', 'compression-type': header.compressionType, 'refcount-bits': 2 ** header.refcountOrder, encrypt }
          : {
              compat: '1.1',
              'compression-type': header.compressionType,
              'lazy-refcounts': header.lazyRefcounts,
              bitmaps: bitmaps?.length ? bitmaps : undefined, // qemu-img leaves out an empty list
              'refcount-bits': 2 ** header.refcountOrder,
              encrypt,
              ...dataFile,
              corrupt: header.corrupt,
              'extended-l2': header.extendedL2,
            },
    },
    encrypted: header.encryption ? true : undefined,
    'import-refused': header.refusal?.message,
  };
}

export interface InspectOptions {
  /** Read every byte to measure one-pass scratch needs (default true). */
  scan?: boolean;
  signal?: AbortSignal;
}

/**
 * Inspects a qcow2 the source can read at any offset (validated exactly as an import would; an
 * image an import refuses on principle is described, with `import-refused` saying why).
 */
export async function inspectQcow2(reader: RandomAccessReader, options: InspectOptions = {}): Promise<Qcow2Info> {
  const header = await readQcow2Header(reader, { describeRefused: true });
  const snapshots = header.snapshotCount > 0 ? await readSnapshotTable(reader, header) : undefined;
  const bitmaps = await readBitmapDirectory(reader, header);
  const info = options.scan === false || header.refusal ? describeHeader(header, bitmaps) : await inspectQcow2Stream(Readable.from(readSequentially(reader)), options, bitmaps);
  return { ...info, snapshots };
}

/**
 * Inspects a qcow2 arriving as a stream (e.g. inside xz): header facts, and with `scan` a full
 * pass (not for an image an import refuses: nothing reads its data).
 */
export async function inspectQcow2Stream(stream: Readable, options: InspectOptions = {}, bitmaps?: BitmapInfo[]): Promise<Qcow2Info> {
  const image = await openQcow2Stream(stream, { signal: options.signal, measureSpillBudget: MEASURE_BUDGET, describeRefused: true });
  const info = describeHeader(image.header, bitmaps);
  if (options.scan === false || image.header.refusal) {
    stream.destroy();
    return info;
  }
  try {
    for await (const _ of image.extents()) {
      // measuring: only decoded compressed clusters come out, and nothing is written
    }
    info['one-pass-scratch-bytes'] = image.scratchBytesUsed!();
  } catch (err) {
    if (!(err instanceof SpillBudgetExceeded)) throw err;
    info['one-pass-scratch-bytes'] = MEASURE_BUDGET;
    info['one-pass-scratch-bytes-at-least'] = true;
  }
  return info;
}

async function* readSequentially(reader: RandomAccessReader): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < reader.size; offset += READ_CHUNK) {
    const chunk = await reader.read(offset, Math.min(READ_CHUNK, reader.size - offset));
    if (chunk.length === 0) return;
    yield chunk;
  }
}
