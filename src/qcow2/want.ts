// The one-pass driver's requests for host bytes (one-pass.ts).

/**
 * Host bytes some part of the image needs. A large image has one per mapped cluster, all
 * waiting at once when its L2 tables come before its data, so the common kinds (data and
 * compressed clusters) are plain records, without a callback or a message string of their own.
 */
export interface Want {
  start: number;
  end: number;
  kind: 'data' | 'compressed' | 'metadata';
  /** Data and compressed clusters: where they go, and how many guest bytes they fill. */
  guestOffset?: number;
  length?: number;
  /** Metadata: what it is, for messages, and what to do with it. */
  what?: string;
  done?(data: Buffer): Promise<void> | void;
  /** Compressed clusters may be cut by the end of the file (qemu reads zeros past it). */
  mayBeShort?: boolean;
  /** Compressed clusters, once decoded: the end of the bytes their data took. */
  consumedEnd?: number;
  /** Measuring: a compressed cluster's bytes, decoded only if its end must be known (measureEnds). */
  input?: Buffer;
  /** Known bytes nobody reads (refcount blocks, unread parts of allocated clusters): fine if missing. */
  optional?: boolean;
  buf?: Buffer;
}

export const describeWant = (want: Want): string =>
  want.kind === 'data'
    ? `data for guest offset ${want.guestOffset}`
    : want.kind === 'compressed'
      ? `compressed cluster for guest offset ${want.guestOffset}`
      : (want.what ?? 'metadata');
