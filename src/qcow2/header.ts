/**
 * The QCOW2 header and its extensions (qemu docs/interop/qcow2.rst), parsed and validated
 * before a single data byte is read. Every rejection of SPEC §3.1 that the header alone can
 * decide lives here, so a hostile image fails before the pipeline writes anything.
 *
 * Two kinds of rejection: structural ones (the header cannot be trusted: qemu-img info fails on
 * them too) always throw; policy ones (a backing file, encryption, an external data file, the
 * corrupt bit: a well-formed image this importer will not read) throw too, unless the caller asks
 * to describe such an image (`cdi-importer info`), when the same error is kept as `refusal`.
 */
import { badInput, type ImportError } from '../errors.js';
import { quoteText } from '../util/quote-text.js';

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
/** Enough bytes for every fixed field of a version 3 header (compression_type at 104). */
export const HEADER_PROBE_BYTES = 112;

const V2_HEADER_LENGTH = 72;
const V3_MIN_HEADER_LENGTH = 104;
const MIN_CLUSTER_BITS = 9;
const MAX_CLUSTER_BITS = 21;
/** qemu's QCOW_MAX_L1_SIZE: an active L1 table above this is refused. */
const MAX_L1_BYTES = 32 << 20;
/** qemu's QCOW_MAX_REFTABLE_SIZE. */
const MAX_REFCOUNT_TABLE_BYTES = 8 << 20;
const MAX_SNAPSHOTS = 65536;
const MAX_BACKING_NAME_SHOWN = 200;

const INCOMPAT_DIRTY = 1n << 0n;
const INCOMPAT_CORRUPT = 1n << 1n;
const INCOMPAT_DATA_FILE = 1n << 2n;
const INCOMPAT_COMPRESSION = 1n << 3n;
const INCOMPAT_EXTENDED_L2 = 1n << 4n;
const KNOWN_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2;
const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

// Header extensions that matter here. Others are skipped, as qemu-img convert skips them: they do
// not change the active layer's bytes (bitmaps, 0x23852875, are listed by info: bitmap-directory.ts).
// The backing format only names the backing file's format, for info.
const EXT_END = 0x00000000;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_FEATURE_NAMES = 0x6803f857;
const EXT_FULL_DISK_ENCRYPTION = 0x0537be77;
const EXT_DATA_FILE = 0x44415441;

export type CompressionType = 'zlib' | 'zstd';

interface HeaderExtension {
  type: number;
  offset: number;
  length: number;
}

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  /** The guest disk's size in bytes: the header's size rounded down to whole 512-byte sectors. */
  virtualSize: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  snapshotCount: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: CompressionType;
  extendedL2: boolean;
  /** Refcounts may be stale; irrelevant for reading (SPEC §3.1). */
  dirty: boolean;
  lazyRefcounts: boolean;
  /** Bytes per L2 entry: 8, or 16 with extended L2 (entry + subcluster bitmap). */
  l2EntryBytes: 8 | 16;
  /** Entries per L2 table (one cluster). */
  l2Entries: number;
  /** 32 subclusters per cluster with extended L2, else 1. */
  subclustersPerCluster: number;
  subclusterSize: number;
  extensions: HeaderExtension[];
  /** The corrupt bit (incompatible bit 1). */
  corrupt: boolean;
  /** The backing file's name, cut short (attacker-controlled: quote it to show it); absent when unreadable. */
  backingFile?: string;
  /** Its format, from the backing format extension, cut short likewise. */
  backingFormat?: string;
  /** How the image is encrypted (qemu-img's `encrypt.format`); `'other'` for an unknown crypt_method. */
  encryption?: 'aes' | 'luks' | 'other';
  /** The external data file's name from its extension, cut short likewise. */
  dataFile?: string;
  /** With an external data file: whether it holds the guest disk as raw (autoclear bit 1). */
  dataFileRaw?: boolean;
  /**
   * Why an import refuses this well-formed image: set only when parsed with `describeRefused`
   * (otherwise this very error is thrown, where it always was).
   */
  refusal?: ImportError;
}

export interface ParseOptions {
  /** Keep a policy refusal as `refusal` instead of throwing it; structural problems still throw. */
  describeRefused?: boolean;
}

/** Offsets of 64-bit fields are checked: qcow2 allows 2^56, we index with safe numbers. */
function u64(buf: Buffer, at: number, field: string): number {
  const value = buf.readBigUInt64BE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw badInput(`qcow2 image has an impossible ${field} (${value}): the image is corrupt`);
  }
  return Number(value);
}

/** Offsets and fields in messages, as qemu prints them. */
export const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/**
 * Checks the magic, version and cluster size from the first bytes, and returns how many bytes
 * the full header needs (one cluster: the header, its extensions and the backing file name).
 */
export function headerClusterSize(probe: Buffer): number {
  if (probe.length < V2_HEADER_LENGTH) {
    throw badInput(`qcow2 image is truncated: ${probe.length} bytes, shorter than a qcow2 header`);
  }
  if (probe.readUInt32BE(0) !== QCOW2_MAGIC) throw badInput('not a qcow2 image: the magic "QFI\\xfb" is missing');
  const version = probe.readUInt32BE(4);
  if (version === 1) {
    // The same magic: qemu-img's older qcow format, which qemu reads with another driver.
    throw badInput('the image is in the old qcow format (version 1), which is not supported: convert it to qcow2 first (qemu-img convert -O qcow2)');
  }
  if (version !== 2 && version !== 3) {
    throw badInput(`qcow2 image has version ${version}; only versions 2 and 3 are supported`);
  }
  const clusterBits = probe.readUInt32BE(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw badInput(
      `qcow2 image has cluster_bits ${clusterBits}; valid values are 9..21 (512 B to 2 MiB clusters): the image is corrupt`,
    );
  }
  return 2 ** clusterBits;
}

/**
 * Parses and validates the header. `head` holds the start of the file, at least one cluster
 * when the file is that long. `sourceSize`, when known, bounds every metadata offset.
 */
export function parseQcow2Header(head: Buffer, sourceSize?: number, options: ParseOptions = {}): Qcow2Header {
  let refusal: ImportError | undefined;
  // The first refusal found is the one an import throws, at the same point as ever.
  const refuse = (err: ImportError) => {
    if (!options.describeRefused) throw err;
    refusal ??= err;
  };
  const clusterSize = headerClusterSize(head);
  const clusterBits = Math.log2(clusterSize);
  const version = head.readUInt32BE(4) as 2 | 3;
  if (version === 3 && head.length < V3_MIN_HEADER_LENGTH) {
    throw badInput(`qcow2 image is truncated: ${head.length} bytes, shorter than a version 3 header`);
  }

  const backingFileOffset = u64(head, 8, 'backing file offset');
  const backingFileSize = head.readUInt32BE(16);
  const backingFile = backingFileOffset === 0 ? undefined : backingName(head, backingFileOffset, backingFileSize);
  if (backingFileOffset !== 0) {
    const shown = backingFile === undefined ? '' : ` (${quoteText(backingFile)})`;
    refuse(badInput(`qcow2 image has a backing file${shown}; backing files are not supported: flatten it with qemu-img convert first`));
  }

  // Sizes from 8 PiB (2^53) up are valid qcow2 (qemu-img makes them) but past what a JavaScript
  // number holds exactly: refused as beyond us, not as corrupt. (No file system holds such a disk.)
  if (head.readBigUInt64BE(24) > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw badInput(`qcow2 image has a virtual size of ${head.readBigUInt64BE(24)} bytes, beyond the largest cdi-importer supports (8 PiB less 1 byte)`);
  }
  const virtualSize = u64(head, 24, 'virtual size');
  const cryptMethod = head.readUInt32BE(32);
  const l1Size = head.readUInt32BE(36);
  const l1TableOffset = u64(head, 40, 'L1 table offset');
  const refcountTableOffset = u64(head, 48, 'refcount table offset');
  const refcountTableClusters = head.readUInt32BE(56);
  const snapshotCount = head.readUInt32BE(60);
  const snapshotsOffset = u64(head, 64, 'snapshot table offset');

  let incompatibleFeatures = 0n;
  let compatibleFeatures = 0n;
  let autoclearFeatures = 0n;
  let refcountOrder = 4;
  let headerLength = V2_HEADER_LENGTH;
  let compressionTypeCode = 0;
  if (version === 3) {
    incompatibleFeatures = head.readBigUInt64BE(72);
    compatibleFeatures = head.readBigUInt64BE(80);
    autoclearFeatures = head.readBigUInt64BE(88);
    refcountOrder = head.readUInt32BE(96);
    // qemu refuses wider entries ("Reference count entry width too large"); 2^6 = 64 bits is the most.
    if (refcountOrder > 6) {
      throw badInput(`qcow2 image has refcount_order ${refcountOrder}: refcounts wider than 64 bits do not exist, so the image is corrupt`);
    }
    headerLength = head.readUInt32BE(100);
    if (headerLength < V3_MIN_HEADER_LENGTH) {
      throw badInput(`qcow2 image has header_length ${headerLength}, below the 104 bytes of a version 3 header: the image is corrupt`);
    }
    if (headerLength > clusterSize) {
      throw badInput(
        `qcow2 image has header_length ${headerLength}, larger than its ${clusterSize}-byte cluster: the image is corrupt`,
      );
    }
    if (headerLength > V3_MIN_HEADER_LENGTH) {
      if (head.length < 105) throw badInput('qcow2 image is truncated inside its header');
      compressionTypeCode = head.readUInt8(104);
    }
  }

  // Extensions come first in the messages that matter: they name the data file or LUKS.
  const extensions = readExtensions(head, headerLength, clusterSize);
  const featureNames = readFeatureNames(head, extensions);

  let encryption: Qcow2Header['encryption'];
  if (cryptMethod !== 0 || extensions.some((e) => e.type === EXT_FULL_DISK_ENCRYPTION)) {
    encryption = cryptMethod === 1 ? 'aes' : cryptMethod === 2 || cryptMethod === 0 ? 'luks' : 'other';
    const kind = encryption === 'other' ? `method ${cryptMethod}` : encryption.toUpperCase();
    refuse(badInput(`qcow2 image is encrypted (${kind}); encrypted images are not supported: decrypt it with qemu-img convert first`));
  }
  const dataFileExt = extensions.find((e) => e.type === EXT_DATA_FILE);
  const dataFile = dataFileExt && extensionText(head, dataFileExt);
  const hasDataFile = (incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n || dataFileExt !== undefined;
  if (hasDataFile) {
    const name = dataFile === undefined ? '' : ` (${quoteText(dataFile)})`;
    refuse(badInput(`qcow2 image keeps its data in an external data file${name}; external data files are not supported: convert it with qemu-img convert first`));
  }
  const corrupt = (incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n;
  if (corrupt) {
    refuse(badInput('qcow2 image is marked corrupt (incompatible feature bit 1); repair it with qemu-img check -r all first'));
  }
  const unknown = incompatibleFeatures & ~KNOWN_INCOMPAT;
  if (unknown !== 0n) {
    const bits: string[] = [];
    for (let bit = 0; bit < 64; bit++) {
      if ((unknown >> BigInt(bit)) & 1n) {
        const name = featureNames.get(bit);
        bits.push(name ? `${bit} (${JSON.stringify(name)})` : String(bit));
      }
    }
    throw badInput(`qcow2 image uses unknown incompatible features (bit ${bits.join(', ')}); this reader cannot read it safely`);
  }

  let compressionType: CompressionType;
  if (compressionTypeCode === 0) compressionType = 'zlib';
  else if (compressionTypeCode === 1) compressionType = 'zstd';
  else throw badInput(`qcow2 image uses unknown compression type ${compressionTypeCode}; only zlib (0) and zstd (1) are supported`);
  if (compressionTypeCode !== 0 && (incompatibleFeatures & INCOMPAT_COMPRESSION) === 0n) {
    throw badInput('qcow2 image sets compression type zstd without its incompatible feature bit 3: the image is corrupt');
  }

  const extendedL2 = (incompatibleFeatures & INCOMPAT_EXTENDED_L2) !== 0n;
  const subclustersPerCluster = extendedL2 ? 32 : 1;
  const subclusterSize = clusterSize / subclustersPerCluster;
  if (subclusterSize < 512) {
    throw badInput(
      `qcow2 image uses extended L2 entries with ${clusterSize}-byte clusters; subclusters need clusters of at least 16 KiB: the image is corrupt`,
    );
  }
  const l2EntryBytes: 8 | 16 = extendedL2 ? 16 : 8;
  const l2Entries = clusterSize / l2EntryBytes;

  // L1: at most 32 MiB, enough entries for the virtual size, cluster aligned, inside the file.
  if (l1Size > MAX_L1_BYTES / 8) {
    throw badInput(`qcow2 image has an L1 table of ${l1Size} entries (${l1Size * 8} bytes), above the 32 MiB limit: the image is corrupt or hostile`);
  }
  const bytesPerL1Entry = clusterSize * l2Entries;
  const l1Needed = Math.ceil(virtualSize / bytesPerL1Entry);
  if (l1Size < l1Needed) {
    throw badInput(
      `qcow2 image has an L1 table of ${l1Size} entries, too small for its virtual size ${virtualSize} (needs ${l1Needed}): the image is corrupt`,
    );
  }
  if (l1Size > 0) checkTable('L1 table', l1TableOffset, l1Size * 8, clusterSize, sourceSize);

  if (refcountTableClusters > MAX_REFCOUNT_TABLE_BYTES / clusterSize) {
    throw badInput(`qcow2 image has a refcount table of ${refcountTableClusters} clusters, above the 8 MiB limit: the image is corrupt`);
  }
  checkTable('refcount table', refcountTableOffset, refcountTableClusters * clusterSize, clusterSize, sourceSize);

  if (snapshotCount > MAX_SNAPSHOTS) {
    throw badInput(`qcow2 image claims ${snapshotCount} snapshots, above qemu's limit of ${MAX_SNAPSHOTS}: the image is corrupt`);
  }
  if (snapshotCount > 0) checkTable('snapshot table', snapshotsOffset, 1, clusterSize, sourceSize);

  return {
    version,
    clusterBits,
    clusterSize,
    // qemu counts the disk in 512-byte sectors (total_sectors = size / 512), so a size that is not a
    // multiple of 512 reads, converts and reports as the whole sectors below it. The L1 check
    // above uses the header's own figure, as qemu's does.
    virtualSize: virtualSize - (virtualSize % 512),
    l1Size,
    l1TableOffset,
    refcountTableOffset,
    refcountTableClusters,
    snapshotCount,
    snapshotsOffset,
    incompatibleFeatures,
    compatibleFeatures,
    autoclearFeatures,
    refcountOrder,
    headerLength,
    compressionType,
    extendedL2,
    dirty: (incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    lazyRefcounts: (compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
    l2EntryBytes,
    l2Entries,
    subclustersPerCluster,
    subclusterSize,
    extensions,
    corrupt,
    backingFile,
    backingFormat: backingFile === undefined ? undefined : extensionText(head, extensions.find((e) => e.type === EXT_BACKING_FORMAT)),
    encryption,
    dataFile,
    dataFileRaw: hasDataFile ? (autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n : undefined,
    refusal,
  };
}

function checkTable(what: string, offset: number, length: number, clusterSize: number, sourceSize?: number): void {
  if (offset % clusterSize !== 0) {
    throw badInput(`qcow2 image has its ${what} at offset ${hex(offset)}, not aligned to its ${clusterSize}-byte clusters: the image is corrupt`);
  }
  if (offset === 0 && length > 0) {
    throw badInput(`qcow2 image has its ${what} at offset 0, on top of the header: the image is corrupt`);
  }
  if (!Number.isSafeInteger(offset + length) || (sourceSize !== undefined && offset + length > sourceSize)) {
    throw badInput(
      `qcow2 image has its ${what} at offset ${hex(offset)} (+${length} bytes), past the end of the ${sourceSize ?? '?'}-byte file: the image is truncated or corrupt`,
    );
  }
}

function readExtensions(head: Buffer, start: number, clusterSize: number): HeaderExtension[] {
  const end = Math.min(head.length, clusterSize);
  const extensions: HeaderExtension[] = [];
  let at = start;
  while (at + 8 <= end) {
    const type = head.readUInt32BE(at);
    const length = head.readUInt32BE(at + 4);
    if (type === EXT_END) break;
    if (length > end - at - 8) {
      throw badInput(`qcow2 header extension ${hex(type)} at offset ${at} runs past the header cluster: the image is corrupt`);
    }
    extensions.push({ type, offset: at + 8, length });
    at += 8 + Math.ceil(length / 8) * 8;
  }
  return extensions;
}

/** Names of feature bits from the feature name table, for clearer messages. */
function readFeatureNames(head: Buffer, extensions: HeaderExtension[]): Map<number, string> {
  const names = new Map<number, string>();
  const table = extensions.find((e) => e.type === EXT_FEATURE_NAMES);
  if (!table) return names;
  for (let at = table.offset; at + 48 <= table.offset + table.length; at += 48) {
    if (head.readUInt8(at) !== 0) continue; // 0 = incompatible
    names.set(head.readUInt8(at + 1), cString(head.subarray(at + 2, at + 48)));
  }
  return names;
}

function cString(bytes: Buffer): string {
  const nul = bytes.indexOf(0);
  return bytes.subarray(0, nul < 0 ? bytes.length : nul).toString('latin1');
}

function backingName(head: Buffer, offset: number, size: number): string | undefined {
  if (size === 0 || offset + Math.min(size, 1023) > head.length) return undefined;
  return shortText(head.subarray(offset, offset + Math.min(size, 1023)));
}

function extensionText(head: Buffer, extension: HeaderExtension | undefined): string | undefined {
  return extension && shortText(head.subarray(extension.offset, extension.offset + extension.length));
}

/** A name from the image, cut short: it is attacker-controlled text. */
function shortText(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  return text.length > MAX_BACKING_NAME_SHOWN ? `${text.slice(0, MAX_BACKING_NAME_SHOWN)}…` : text;
}
