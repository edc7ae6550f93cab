import type { Readable } from 'node:stream';
import type { LocalFile } from '../extents.js';

/** A range of bytes, [start, end). */
export interface ByteRange {
  start: number;
  end: number;
}

/** Where a source holds data; the rest (holes) reads as zeros and need not be read. */
export interface DataMap {
  /** The data range that starts at or after `offset`, or undefined if only zeros follow. */
  nextData(offset: number): Promise<ByteRange | undefined>;
  /** The data ranges within [start, end), in order. */
  dataIn(start: number, end: number): Promise<ByteRange[]>;
}

/**
 * Random access to the source's bytes (a local file, HTTP with Range). Reads past the end
 * return a shorter buffer; a reader never reads beyond `size`.
 */
export interface RandomAccessReader {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
  /** Present when the source knows its holes (a sparse local file). */
  readonly dataMap?: DataMap;
  /**
   * How many contiguous bytes are worth asking for in one read (default 1 MiB, right for a local
   * file). A network source asks for more at once: each request waits a round trip.
   */
  readonly preferredReadBytes?: number;
  /**
   * Present for a local file or device: readers that see it may refer to its bytes (Extent.inFile)
   * rather than read them. openDiskImage shows it to them only for a target that copies between
   * files, and when the native copy is available.
   */
  readonly localFile?: LocalFile;
}

/** What a source hands to the pipeline once opened. */
export interface OpenedSource {
  /** The source's bytes from the start, as sent (compressed or not). */
  stream: Readable;
  /** Total byte count when the transport knows it (file size, Content-Length). */
  size?: number;
  /**
   * For progress only, when `size` cannot be given: about how many bytes the stream carries (a
   * form upload's Content-Length, whose form envelope is a few hundred bytes more than the image).
   */
  progressTotal?: number;
  /**
   * Present when the transport can read at any offset. The pipeline uses it for qcow2 images
   * that are not compressed as a whole, instead of `stream` (which it then destroys).
   */
  randomAccess?: RandomAccessReader;
  /** Extra facts for the result, e.g. labels from a registry image config. */
  labels?: Record<string, string>;
}

/**
 * Transport only (DESIGN.md): how to get bytes. Checksums, progress and formats are the
 * pipeline's business.
 */
export interface Source {
  /** For messages: a path or a URL without credentials. */
  readonly description: string;
  open(signal: AbortSignal): Promise<OpenedSource>;
}
