/**
 * The undici parts egress uses, loaded on first use and by their own modules, as src/proxy/index.ts
 * loads Pool: undici's index also loads fetch, WebSocket, EventSource, the caches and the mock agents
 * (about 2.5 MB more heap, 5 MB more RSS), and a gateway without egress profiles needs none of this.
 * The request()/connect() API functions are called with the dispatcher as `this`, as undici's index
 * does when it copies them onto Dispatcher.prototype (which only happens once that index is loaded).
 * test/egress/undici.test.ts checks these are undici's public classes and functions.
 */
import { createRequire } from 'node:module';
import type { Agent, buildConnector, Client, Dispatcher, Pool, ProxyAgent } from 'undici';

export interface UndiciParts {
  readonly Agent: typeof Agent;
  readonly ProxyAgent: typeof ProxyAgent;
  readonly Pool: typeof Pool;
  readonly Client: typeof Client;
  readonly buildConnector: typeof buildConnector;
  /** undici's request(), called as request.call(dispatcher, options). */
  readonly request: (this: Dispatcher, options: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;
  /** undici's connect() (HTTP CONNECT), called as connect.call(dispatcher, options). */
  readonly connect: (this: Dispatcher, options: Dispatcher.ConnectOptions) => Promise<Dispatcher.ConnectData>;
}

let parts: UndiciParts | undefined;

export function undici(): UndiciParts {
  if (parts === undefined) {
    const require = createRequire(import.meta.url);
    const api = require('undici/lib/api/index.js') as { request: UndiciParts['request']; connect: UndiciParts['connect'] };
    parts = {
      Agent: require('undici/lib/dispatcher/agent.js') as typeof Agent,
      ProxyAgent: require('undici/lib/dispatcher/proxy-agent.js') as typeof ProxyAgent,
      Pool: require('undici/lib/dispatcher/pool.js') as typeof Pool,
      Client: require('undici/lib/dispatcher/client.js') as typeof Client,
      buildConnector: require('undici/lib/core/connect.js') as typeof buildConnector,
      request: api.request,
      connect: api.connect,
    };
  }
  return parts;
}
