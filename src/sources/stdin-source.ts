import type { OpenedSource, Source } from './source.js';

/** Standard input: sequential only, size unknown. */
export class StdinSource implements Source {
  readonly description = 'standard input';

  async open(): Promise<OpenedSource> {
    return { stream: process.stdin };
  }
}
