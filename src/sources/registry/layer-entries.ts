/**
 * One layer blob as tar entries: fetched, digest-verified as it streams, decompressed by magic
 * (gzip, zstd, or plain tar; xz too, since the decoder is there), parsed by tar-stream.
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type Header } from 'tar-stream';
import { badInput, ImportError, oneLine } from '../../errors.js';
import { createDecompressor } from '../../formats/decompress.js';
import { detectFormat, isCompression } from '../../formats/magic.js';
import { peekStream } from '../../formats/peek.js';
import { isRetryableTransportError, transportError } from '../http/http-errors.js';
import { StallWatchdog } from '../http/stall-watch.js';
import { DigestVerifier } from './digest.js';
import type { Descriptor } from './manifest.js';
import type { RegistryClient } from './registry-client.js';

export interface LayerEntry {
  header: Header;
  /** The entry's bytes; left unread, they are skipped when the walk moves on. */
  body: Readable;
}

/** Enough for tar's `ustar` at 257 and every compression magic. */
const PEEK_BYTES = 512;

export async function* layerEntries(
  client: RegistryClient,
  layer: Descriptor,
  what: string,
  signal: AbortSignal,
): AsyncGenerator<LayerEntry, void, undefined> {
  const url = client.repositoryUrl(`blobs/${layer.digest}`);
  const response = await client.get(url, undefined, signal, () => badInput(`${what} is missing from the registry (blob unknown)`));
  const body = response.body as unknown as Readable;
  // The first failure explains the rest: later stages only see "premature close".
  let failure: unknown;
  const note = (err: unknown) => {
    failure ??= err;
  };
  const verifier = new DigestVerifier(layer.digest, layer.size, what);
  verifier.on('error', note);
  body.on('error', note);
  // undici's body timeout is off (the consumer may be the slow side), so stalls are watched
  // here: only while the body flows, not while the pipe is paused for backpressure.
  const watchdog = new StallWatchdog(client.stallMs, (err) => body.destroy(err));
  watchdog.waiting();
  body.on('data', () => watchdog.waiting());
  body.on('pause', () => watchdog.idle());
  body.on('resume', () => watchdog.waiting());
  body.once('close', () => watchdog.stop());
  const fetched = pipeline(body, verifier).catch(note);
  const extract = tarExtract();
  const stages: Readable[] = [body, verifier];
  try {
    const peeked = await peekStream(verifier, PEEK_BYTES);
    let tarStream = peeked.stream;
    stages.push(tarStream);
    const format = detectFormat(peeked.head);
    if (isCompression(format)) {
      const decompressor = createDecompressor(format);
      decompressor.on('error', note);
      tarStream.on('error', (err) => decompressor.destroy(err));
      tarStream = tarStream.pipe(decompressor);
      stages.push(decompressor);
    }
    const parsed = pipeline(tarStream, extract).catch(note);
    for await (const entry of extract) {
      yield { header: entry.header, body: entry as unknown as Readable };
      entry.resume();
    }
    await parsed;
    await fetched;
    if (failure) throw failure;
  } catch (err) {
    throw explain(failure ?? err, what, url, signal);
  } finally {
    watchdog.stop();
    extract.destroy();
    for (const stage of stages) stage.destroy();
  }
}

function explain(err: unknown, what: string, url: URL, signal: AbortSignal): unknown {
  if (err instanceof ImportError) return err;
  if (signal.aborted) return signal.reason ?? err;
  if (isRetryableTransportError(err)) return transportError(err, url);
  return badInput(`${what} is not a readable tar layer (plain, gzip or zstd): ${oneLine(err)}`, err);
}
