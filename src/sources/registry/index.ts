/**
 * Registry (OCI distribution) source, SPEC §5.2: `docker://host/repo:tag` or `@sha256:…`. Hands the
 * pipeline the bytes of the one file under /disk, streamed from its layer as it downloads; the
 * pipeline unwraps and converts them as for any source (gz/xz/zst, qcow2 in one pass).
 */
import { Readable } from 'node:stream';
import type { TransportOptions } from '../../request.js';
import type { OpenedSource, Source } from '../source.js';
import { SourceDispatchers } from '../http/dispatcher.js';
import type { RetryNotice, RetryPolicy } from '../http/retry-policy.js';
import { walkForDisk, type FoundDisk } from './disk-walk.js';
import { labelsFromEnv } from './image-labels.js';
import { layerEntries } from './layer-entries.js';
import { resolveImage } from './manifest.js';
import { checkArchitecture, wantedArchitecture } from './platform.js';
import { ImportError, isImportError } from '../../errors.js';
import { parseRegistryReference, type RegistryReference } from './reference.js';
import { RegistryClient } from './registry-client.js';

/** Knobs for tests; defaults suit real networks. */
export interface RegistryTuning {
  /** Proxy variables come from here (default: process.env). */
  env?: NodeJS.ProcessEnv;
  retry?: RetryPolicy;
  /** Hears of every retry (see HttpTuning.onRetry). */
  onRetry?: RetryNotice;
}

export class RegistrySource implements Source {
  readonly description: string;
  private readonly ref: RegistryReference;

  constructor(
    url: string,
    private readonly transport: TransportOptions,
    private readonly tuning: RegistryTuning = {},
  ) {
    this.ref = parseRegistryReference(url);
    this.description = `docker://${this.ref.display}`;
  }

  async open(outerSignal: AbortSignal): Promise<OpenedSource> {
    const dispatchers = new SourceDispatchers(this.transport, this.tuning.env ?? process.env);
    // Destroying the stream early (the pipeline failed or finished) stops the downloads at once,
    // instead of letting the walk finish the layers it was checking.
    const local = new AbortController();
    const signal = AbortSignal.any([outerSignal, local.signal]);
    let walk: AsyncGenerator<FoundDisk, void, undefined> | undefined;
    try {
      const display = this.description;
      const { client, image } = await pulled(async () => {
        const client = await RegistryClient.connect(this.ref, this.transport, dispatchers, signal, this.tuning.retry, this.tuning.onRetry);
        return { client, image: await resolveImage(client, wantedArchitecture(this.transport.architecture), signal) };
      });
      checkArchitecture(image.config.architecture, this.transport.architecture, display);
      const layers = image.layers;
      walk = walkForDisk(
        layers.length,
        (index) => layerEntries(client, layers[index]!, `layer ${index + 1} of ${layers.length} (${layers[index]!.digest}) of ${display}`, signal),
        display,
      );
      const first = await walk.next();
      // walkForDisk throws when there is no disk, so `done` here cannot happen; kept for the types.
      if (first.done) throw new Error('unreachable: disk walk ended without a disk or an error');
      const disk = first.value;
      const rest = walk;
      async function* diskThenCheck(): AsyncGenerator<Buffer> {
        try {
          try {
            for await (const chunk of disk.body) yield chunk as Buffer;
          } catch (err) {
            // The entry only knows it was cut off; the layer walk knows why (digest, transport, stall).
            await rest.next();
            throw err;
          }
          // The rest of the walk: digests of the disk's layer and the layers below, and no second disk.
          const after = await rest.next();
          if (!after.done) throw new Error('unreachable: the disk walk found a second disk without failing');
        } finally {
          await rest.return(undefined).catch(() => {});
        }
      }
      const stream = Readable.from(diskThenCheck(), { objectMode: false, highWaterMark: 1 << 20 });
      stream.once('close', () => {
        if (!stream.readableEnded) local.abort(new Error('registry stream closed before its end'));
        void dispatchers.close().catch(() => {});
      });
      const labels = labelsFromEnv(image.config.config?.Env);
      return { stream, size: disk.size, ...(Object.keys(labels).length > 0 ? { labels } : {}) };
    } catch (err) {
      await walk?.return(undefined).catch(() => {});
      await dispatchers.close().catch(() => {});
      throw err;
    }
  }
}

/**
 * Runs the pull (credentials, manifests, config) with CDI's words on a failure: its controller reads
 * "failed to pull image" in the termination message and sets the DataVolume's reason to
 * ImagePullFailed (a wrong tag, bad credentials, an unreachable registry).
 */
async function pulled<T>(pull: () => Promise<T>): Promise<T> {
  try {
    return await pull();
  } catch (err) {
    if (!isImportError(err) || err.category === 'cancelled') throw err;
    throw new ImportError(err.category, `failed to pull image: ${err.message}`, { cause: err });
  }
}
