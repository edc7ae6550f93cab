import type { Source } from './sources/source.js';

export type ContentType = 'kubevirt' | 'archive';

export interface HttpAuth {
  username: string;
  password: string;
}

/** Transport settings shared by HTTP and registry sources. */
export interface TransportOptions {
  auth?: HttpAuth;
  /** Extra CA files or directories of PEM files, trusted in addition to the system CAs. */
  caPaths?: string[];
  insecure?: boolean;
  /** CA files or directories for a TLS proxy (`/proxycerts/`), trusted for the proxy and for origins behind it. */
  proxyCaPaths?: string[];
  /** Extra request headers, `Name: value`. */
  headers?: string[];
  /** Seconds without a byte before a connection counts as stalled. */
  stallTimeoutSeconds?: number;
  /** Platform architecture to pick from a registry manifest list. */
  architecture?: string;
  /**
   * `localhost` and loopback addresses never go through a proxy, as Go's httpproxy (CDI's importer)
   * has it; set in pod mode. curl, whose rules the CLI follows, sends them to the proxy.
   */
  loopbackBypassesProxy?: boolean;
}

/** Where the bytes come from; resolved to a Source by sources/resolve-source.ts. */
export type SourceSpec =
  | { kind: 'file'; path: string }
  | { kind: 'stdin' }
  /** `wholeFile`: one download of the whole file, no Range reads (importImage's second try after a SourceChangedError). */
  | { kind: 'http'; url: string; transport: TransportOptions; wholeFile?: boolean }
  | { kind: 'registry'; url: string; transport: TransportOptions }
  | { kind: 'blank' }
  | { kind: 'custom'; source: Source };

export type TargetSpec =
  | {
      kind: 'file';
      path: string;
      /** write under a temporary name and rename at the end (CLI) */
      atomic: boolean;
      /**
       * Create the file as qemu-img and cp do (0666 less the umask; a replaced file keeps its
       * mode) rather than as CDI's disk.img, 0660 whatever the umask (pod mode, the default).
       */
      localMode?: boolean;
      /** fsync before completing (default true); `convert`, like qemu-img convert, leaves it to the page cache */
      sync?: boolean;
      /**
       * No free-space check before writing (`convert`, like qemu-img convert): a sparse image may be
       * far larger than the free space; a disk that really fills up fails when it does.
       */
      unbounded?: boolean;
    }
  | {
      kind: 'block';
      path: string;
      /** fsync as it goes and before completing (default true); `convert` and `--no-fsync` leave it to the page cache */
      sync?: boolean;
    }
  | { kind: 'directory'; path: string };

export interface ChecksumSpec {
  algorithm: 'md5' | 'sha1' | 'sha256' | 'sha512';
  hex: string;
}

/** Every front door (CLI, pod env, upload server, DataVolume manifest) builds one of these. */
export interface ImportRequest {
  source: SourceSpec;
  contentType: ContentType;
  target: TargetSpec;
  /** Requested volume size in bytes (IMPORTER_IMAGE_SIZE / --size). */
  requestedSize?: number;
  /** Fraction reserved on filesystem volumes (0.06 default for files, 0 for block). */
  filesystemOverhead: number;
  preallocation: boolean;
  checksum?: ChecksumSpec;
  scratchDir?: string;
  /**
   * The disk format the caller says the image is (convert -f, as with qemu-img): anything else
   * is refused before writing. Compression layers around it are still unwrapped.
   */
  expectedFormat?: 'raw' | 'qcow2';
}

export interface ImportResult {
  /** Format chain as detected, outermost first, e.g. ['xz', 'qcow2']. */
  formats: string[];
  virtualSize: number;
  /** Final size of the target (after resize). */
  targetSize: number;
  /** Bytes of the source read (compressed size). */
  sourceBytes: number;
  /**
   * Bytes written to the target: for a file, the data written (all-zero 4 KiB blocks left as holes
   * do not count), so a disk gives the same figure as raw or qcow2; for a block device, every byte
   * written (zeros too, unless the device could zero ahead); for an archive, the content bytes extracted.
   */
  bytesWritten: number;
  scratchBytesUsed: number;
  preallocationApplied: boolean;
  labels?: Record<string, string>;
  /** Archive imports: what was extracted. */
  archive?: { files: number; directories: number; links: number; bytes: number; skipped: string[] };
  checksum?: string;
}

export interface ProgressReport {
  /** Source bytes read so far. */
  bytes: number;
  /** Total source bytes when known. */
  total?: number;
}

export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
}

export interface ImportContext {
  signal?: AbortSignal;
  progress?: (report: ProgressReport) => void;
  log?: Logger;
  /**
   * Called once the image is known to fit the target: before anything is written when its
   * virtual size is declared, after the last write for a stream whose size shows only as it goes
   * (gzip or zstd raw), so that nobody is told it fits before the stream has been decoded.
   */
  onChecked?: () => void;
  /**
   * Called once every source byte has been read and decoded (a .gz/.xz/.zst checked to its end),
   * before the last writes: what fails after it is the target's doing or a check at the very end.
   */
  onSourceDecoded?: () => void;
}
