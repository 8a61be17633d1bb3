/**
 * Ask an IP-echo service (ifconfig.me, api.ipify.org, an internal one …) which public IP a profile's
 * traffic is seen with. The answer is the address as text, or JSON with `ip` (ipify) or `origin`
 * (httpbin); anything else is an error, and the body is never echoed into it.
 */
import { isIP } from 'node:net';
import type { Dispatcher } from 'undici';
import { canonicalIp } from '../core/addresses.ts';
import { refusalHint } from './tunnel.ts';
import { undici } from './undici.ts';

/** Largest answer read: an address is at most 45 characters, JSON around it a little more. */
const MAX_BODY_BYTES = 1024;

export { canonicalIp, sameIp } from '../core/addresses.ts';

/** The echo URL without its query (which might hold a key) for messages. */
const shown = (url: URL) => `${url.origin}${url.pathname}`;

/** What an error from undici's ProxyAgent means, in one sentence; other errors keep their message. */
export function explainEgressError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const m = /Proxy response \((\d{3})\) !== 200/.exec(message);
  if (m === null) return message;
  const status = Number(m[1]);
  return `the egress proxy refused the tunnel with HTTP ${status}${refusalHint(status)}`;
}

function parseAnswer(text: string): string | undefined {
  const body = text.trim();
  let candidate: unknown = body;
  if (body.startsWith('{')) {
    try {
      const json = JSON.parse(body) as Record<string, unknown>;
      candidate = json['ip'] ?? json['origin'];
    } catch {
      return undefined;
    }
  }
  if (typeof candidate !== 'string') return undefined;
  // httpbin's origin may list a chain ("client, proxy"): the first is the caller.
  const first = candidate.split(',')[0]?.trim() ?? '';
  return isIP(first) !== 0 ? canonicalIp(first) : undefined;
}

/** GET the echo URL through `dispatcher`; resolves with the IP it answered, rejects with a readable reason. */
export async function fetchPublicIp(dispatcher: Dispatcher, echoUrl: string, timeoutMs: number, signal: AbortSignal): Promise<string> {
  const url = new URL(echoUrl);
  const abort = new AbortController();
  const onAbort = () => abort.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => abort.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  timer.unref();
  try {
    let res: Dispatcher.ResponseData;
    try {
      res = await undici().request.call(dispatcher, {
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: { accept: 'text/plain, application/json' },
        signal: abort.signal,
      });
    } catch (err) {
      throw new Error(
        `IP echo ${shown(url)} failed: ${abort.signal.aborted ? (abort.signal.reason as Error).message : explainEgressError(err)}`,
        {
          cause: err,
        },
      );
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) break;
        chunks.push(chunk);
      }
    } catch (err) {
      throw new Error(`IP echo ${shown(url)} failed while reading its answer: ${(err as Error).message}`, { cause: err });
    } finally {
      res.body.destroy();
    }
    if (res.statusCode !== 200) throw new Error(`IP echo ${shown(url)} answered HTTP ${res.statusCode}`);
    if (size > MAX_BODY_BYTES) throw new Error(`IP echo ${shown(url)} answered more than ${MAX_BODY_BYTES} bytes, not an IP address`);
    const ip = parseAnswer(Buffer.concat(chunks).toString('utf8'));
    if (ip === undefined) throw new Error(`IP echo ${shown(url)} answered ${size} bytes that are not an IP address (body not shown)`);
    return ip;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}
