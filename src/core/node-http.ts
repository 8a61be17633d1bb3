/**
 * node:http, loaded with require() instead of an ES import. An ES import of a built-in module
 * builds its namespace from every export, and node:http's exports include lazy getters
 * (`WebSocket`, `CloseEvent`, `MessageEvent`) that load Node's own bundled undici: about 2.3 MB more
 * heap and 13 MB more RSS, measured on Node 24, for a client the gateway never uses. Source files
 * take node:http's values from here; `import type` from 'node:http' stays fine (it is erased), and
 * the lint config rejects any other value import of it.
 */
import type * as NodeHttp from 'node:http';
import { createRequire } from 'node:module';

const http = createRequire(import.meta.url)('node:http') as typeof NodeHttp;

export const { Agent, createServer, ServerResponse, STATUS_CODES } = http;
/** The class's instance type, so `Agent` names both, as it does in node:http. */
export type Agent = NodeHttp.Agent;
/** The class's instance type, so `ServerResponse` names both, as it does in node:http. */
export type ServerResponse<Request extends NodeHttp.IncomingMessage = NodeHttp.IncomingMessage> = NodeHttp.ServerResponse<Request>;
