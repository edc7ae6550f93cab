import type { SourceSpec } from '../request.js';
import type { Source } from './source.js';
import { FileSource } from './file-source.js';
import { StdinSource } from './stdin-source.js';
import { usageError } from '../errors.js';

/** SourceSpec → the transport that fetches it. Network transports load on first use: local imports start faster. */
export async function resolveSource(spec: SourceSpec): Promise<Source> {
  switch (spec.kind) {
    case 'file':
      return new FileSource(spec.path);
    case 'stdin':
      return new StdinSource();
    case 'custom':
      return spec.source;
    case 'http':
      return new (await import('./http/index.js')).HttpSource(spec.url, spec.transport);
    case 'registry':
      return new (await import('./registry/index.js')).RegistrySource(spec.url, spec.transport);
    case 'blank':
      throw usageError('a blank disk has no source to open');
  }
}
