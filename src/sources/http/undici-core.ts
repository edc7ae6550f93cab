/**
 * The part of undici a source uses: Agent, ProxyAgent and `request`. undici's index also
 * loads fetch, WebSocket, caches and mocks, about 50 ms of every CLI run's start for nothing;
 * these files are loaded directly instead, falling back to the index if its layout changes.
 */
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import type * as Undici from 'undici';

export interface UndiciCore {
  Agent: typeof Undici.Agent;
  ProxyAgent: typeof Undici.ProxyAgent;
  request: typeof Undici.request;
}

type DispatcherRequest = (this: Undici.Dispatcher, options: Record<string, unknown>) => ReturnType<typeof Undici.request>;

function loadCore(): UndiciCore {
  // undici parses HTTP with llhttp compiled to WebAssembly. V8 would recompile it with TurboFan
  // in the background, which costs a CLI run 60-100 ms of CPU and a wait at exit for a parser
  // that only frames bodies; Liftoff's baseline code is plenty. Read when llhttp is compiled,
  // i.e. at undici's first request, after this point.
  setFlagsFromString('--liftoff-only');
  const require = createRequire(import.meta.url);
  try {
    const Dispatcher = require('undici/lib/dispatcher/dispatcher.js') as { prototype: object };
    const api = require('undici/lib/api/index.js') as { request: DispatcherRequest };
    // What undici's index does: dispatchers get request/stream/connect… (ProxyAgent's CONNECT needs it).
    Object.assign(Dispatcher.prototype, api);
    const Agent = require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
    const ProxyAgent = require('undici/lib/dispatcher/proxy-agent.js') as typeof Undici.ProxyAgent;
    if (typeof Agent !== 'function' || typeof ProxyAgent !== 'function' || typeof api.request !== 'function') throw new Error('layout');
    const request = ((url: URL, options: Undici.Dispatcher.RequestOptions & { dispatcher: Undici.Dispatcher }) =>
      api.request.call(options.dispatcher, {
        ...options,
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: options.method ?? 'GET',
      })) as unknown as typeof Undici.request;
    return { Agent, ProxyAgent, request };
  } catch {
    return require('undici') as UndiciCore;
  }
}

let loaded: UndiciCore | undefined;

/** Loaded on first use, so runs without an HTTP source never pay for it. */
export function undici(): UndiciCore {
  return (loaded ??= loadCore());
}
