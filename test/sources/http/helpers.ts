/** Small helpers shared by the HTTP source tests. */
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { HttpTuning } from '../../../src/sources/http/index.js';

/**
 * Fast retries so fault tests take milliseconds, not the production backoff; and every server is
 * near (a loopback probe can take more than 5 ms on a busy machine), so whole-file downloads take
 * the direct client's 1 MiB Range requests whatever the load. The far-server tests set their own.
 */
export const quickTuning: Partial<HttpTuning> = {
  retry: { retries: 4, maxResumes: 20, baseDelayMs: 10, maxDelayMs: 50 },
  nearServerMs: Infinity,
};

export async function digestStream(stream: Readable): Promise<{ sha256: string; length: number }> {
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), length };
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Incompressible test content of `size` bytes. */
export const randomContent = (size: number) => randomBytes(size);
