/**
 * A generic, injected look at upstream responses: the proxy knows nothing of what an observer looks
 * for (the WeCom error scan lives in src/diagnostics/). An observer is attached to a route once, when
 * the route table is built (`ProxyDeps.observer`); a route without one costs a single null check per
 * response. A route's observer decides on the response head whether to look at the body at all, so
 * most responses never get a sink.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { RouteConfig } from '../config/schema.ts';
import type { RequestContext } from '../core/http.ts';

/** Looks at the responses of one route. */
export interface ResponseObserver {
  /**
   * At the response head (status ≥ 200): a sink for this response's body, or undefined to let it
   * pass unobserved. `headers` are the upstream's, as undici reports them (lower-case names).
   */
  open(req: IncomingMessage, ctx: RequestContext, status: number, headers: IncomingHttpHeaders): BodySink | undefined;
}

/** What an observer takes the place of: a head (flat name/value list, as given to writeHead) and a body. */
export interface Replacement {
  readonly head: string[];
  readonly body: string;
}

/** One response's body, offered chunk by chunk. */
export interface BodySink {
  /**
   * Hold the response (head and body) back until end(), which may then replace it (the status is
   * kept). Only for small bodies: the sink stops the hold by returning false from data().
   */
  readonly hold: boolean;
  /** The next body chunk, in order. Returning false ends the observation (a holding sink: the response goes out unchanged). */
  data(chunk: Buffer): boolean;
  /**
   * The body ended and every chunk was taken. `head` is what the proxy would send (holding sinks;
   * null otherwise). A holding sink may return a replacement; anything else is ignored.
   */
  end(head: string[] | null): Replacement | undefined;
}

/** Called once per route when the route table is built: the route's observer, or undefined for none. */
export type ObserverFactory = (route: { readonly name: string; readonly config: RouteConfig }) => ResponseObserver | undefined;
