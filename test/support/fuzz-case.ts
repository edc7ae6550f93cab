/** What the mutation fuzzers (qcow2, tar, xz, multipart) share: running a case with a hang limit, judging a refusal, feeding bytes in pieces. */

/**
 * Runs one case: its value or its error, or `hung()` thrown once `ms` pass (the case's signal is
 * aborted first, so whatever it holds is let go).
 */
export async function settleWithin<T>(ms: number, run: (signal: AbortSignal) => Promise<T>, hung: () => Error): Promise<{ value: T } | { err: unknown }> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(hung());
    }, ms);
  });
  try {
    return await Promise.race([run(controller.signal).then((value) => ({ value }), (err: unknown) => ({ err })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Why an error is not a clear refusal (a code bug, or no one-line message), or undefined when it is one. */
export function unclearRefusal(err: unknown): string | undefined {
  if (!(err instanceof Error) || err instanceof TypeError || err instanceof RangeError) return `a bug, not a refusal: ${(err as Error)?.stack ?? String(err)}`;
  if (err.message.includes('\n') || err.message.length === 0) return `an unclear message: ${JSON.stringify(err.message)}`;
  return undefined;
}

/** `data` in pieces of the given sizes, cycled. */
export function* pieces(data: Buffer, sizes: number[]): Generator<Buffer> {
  for (let at = 0, i = 0; at < data.length; i++) {
    const size = sizes[i % sizes.length]!;
    yield data.subarray(at, at + size);
    at += size;
  }
}
