/**
 * The "gateway paths" stage: wegate's own public paths live under one reserved prefix
 * (`gateway.prefix`, default "/.wegate/") that is never proxied. The pipeline asks this stage
 * (one startsWith on the normalised path) after the verification files and before redirect and
 * routing; the first segment after the prefix names the handler ("relay", later the login
 * callback and JWKS); anything else under the prefix is a 404.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type RequestContext, sendError } from '../core/http.ts';

/** A handler of `<prefix><name>/…`; `rest` is the path after the name ("/cgi-bin/…" or ""). */
export type GatewayPathHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  rest: string,
  expectContinue: boolean,
) => void;

export interface GatewayPaths {
  /** The reserved prefix, "/x/" (normalised path space). */
  readonly prefix: string;
  handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, expectContinue: boolean): void;
}

export function createGatewayPaths(prefix: string, handlers: Readonly<Record<string, GatewayPathHandler | undefined>>): GatewayPaths {
  const table = new Map<string, GatewayPathHandler>();
  for (const [name, h] of Object.entries(handlers)) if (h) table.set(name, h);
  return {
    prefix,
    handle(req, res, ctx, expectContinue) {
      const rest = ctx.path.slice(prefix.length);
      const slash = rest.indexOf('/');
      const handler = table.get(slash === -1 ? rest : rest.slice(0, slash));
      if (handler === undefined) {
        ctx.route = 'gateway';
        return sendError(req, res, ctx, 'WG_NOT_FOUND');
      }
      handler(req, res, ctx, slash === -1 ? '' : rest.slice(slash), expectContinue);
    },
  };
}
