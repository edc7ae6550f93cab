/**
 * One layer blob as tar entries: fetched, digest-verified as it streams, decompressed by magic
 * (gzip, zstd, or plain tar; xz too, since the decoder is there), parsed by tar-stream.
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type Header } from 'tar-stream';
import { badInput, ImportError, oneLine } from '../../errors.js';
import { createDecompressor } from '../../formats/decompress.js';
import { decoderFailureMessage } from '../../formats/unwrap.js';
import { TarPrepass, type EntryFacts } from '../../formats/tar/tar-prepass.js';
import { detectFormat, isCompression } from '../../formats/magic.js';
import { peekStream } from '../../formats/peek.js';
import { isRetryableTransportError, transportError } from '../http/http-errors.js';
import { identityOf } from '../http/resource-identity.js';
import { ResumableBody } from '../http/resumable-body.js';
import { DigestVerifier } from './digest.js';
import type { Descriptor } from './manifest.js';
import type { RegistryClient } from './registry-client.js';

export interface LayerEntry {
  header: Header;
  /** What tar-stream does not say: the raw typeflag and a GNU sparse map. */
  facts: EntryFacts | undefined;
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
  const missing = () => badInput(`${what} is missing from the registry (blob unknown)`);
  const response = await client.get(url, undefined, signal, missing);
  // A dropped or stalled layer download resumes with Range where it stopped (blobs are
  // content-addressed, so the bytes cannot change under us; the digest check covers the rest).
  const body = new ResumableBody(client.endpointFor(url), response, identityOf(response.headers), {
    stallMs: client.stallMs,
    retry: client.retry,
    onRetry: client.onRetry,
    // Through the client: a token that expired during a long download is renewed for the resume.
    request: (headers, resumeSignal) => client.get(url, undefined, resumeSignal, missing, headers),
  });
  const forwardAbort = () => body.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  signal.addEventListener('abort', forwardAbort, { once: true });
  body.once('close', () => signal.removeEventListener('abort', forwardAbort));
  // The first failure explains the rest: later stages only see "premature close".
  let failure: unknown;
  const note = (err: unknown) => {
    failure ??= err;
  };
  const verifier = new DigestVerifier(layer.digest, layer.size, what);
  verifier.on('error', note);
  body.on('error', note);
  const fetched = pipeline(body, verifier).catch(note);
  // v7 headers (no ustar magic) are tars too, as Go's archive/tar (CDI, containerd) reads them
  // (tar-stream's own typings omit the option its extract.js reads).
  const extract = tarExtract({ allowUnknownFormat: true } as Parameters<typeof tarExtract>[0]);
  const stages: Readable[] = [body, verifier];
  let entries = 0;
  let outer: string | undefined;
  try {
    const peeked = await peekStream(verifier, PEEK_BYTES);
    let tarStream = peeked.stream;
    stages.push(tarStream);
    const format = detectFormat(peeked.head);
    outer = format;
    if (isCompression(format)) {
      const decompressor = createDecompressor(format);
      decompressor.on('error', (err) => note(badInput(decoderFailureMessage(format, oneLine(err), what), err)));
      tarStream.on('error', (err) => decompressor.destroy(err));
      tarStream = tarStream.pipe(decompressor);
      stages.push(decompressor);
    }
    // The prepass reads what tar-stream drops: GNU sparse maps (`tar --sparse` packs a disk so).
    const prepass = new TarPrepass();
    const parsed = pipeline(tarStream, prepass, extract).catch(note);
    for await (const entry of extract) {
      entries++;
      const facts = prepass.facts.get(entry.offset);
      prepass.facts.delete(entry.offset);
      yield { header: entry.header, facts, body: entry as unknown as Readable };
      entry.resume();
    }
    await parsed;
    await fetched;
    if (failure) throw failure;
  } catch (err) {
    throw explain(failure ?? err, what, url, signal, entries === 0 ? outer : undefined);
  } finally {
    extract.destroy();
    for (const stage of stages) stage.destroy();
  }
}

/** `firstFormat`: the blob's detected format, when the failure came before the first tar entry. */
function explain(err: unknown, what: string, url: URL, signal: AbortSignal, firstFormat?: string): unknown {
  if (err instanceof ImportError) return err;
  if (signal.aborted) return signal.reason ?? err;
  if (isRetryableTransportError(err)) return transportError(err, url);
  if (firstFormat !== undefined && /Invalid tar header/.test(oneLine(err))) {
    // tar-stream's own hint ("needs to be gunzipped?") is wrong here: compression was peeled by magic.
    const bare = firstFormat === 'qcow2' ? ' (it is a bare qcow2 image)' : '';
    return badInput(
      `${what} is not a tar layer${bare}: a container disk holds its image as a file under /disk/ in a tar layer; a layer that is the disk image itself (an OCI artifact) is not supported`,
      err,
    );
  }
  return badInput(`${what} is not a readable tar layer (plain, gzip or zstd): ${oneLine(err)}`, err);
}
