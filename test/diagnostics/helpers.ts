/**
 * A vendor upstream that really calls WeCom: a loopback HTTP server whose WeCom client is pinned to
 * 127.0.0.3 (an undici Agent with the test CA) and calls the fake WeCom (test/helpers/fake-wecom.ts),
 * which trusts only 127.0.0.2 for the app; so the fake answers 60020 with the vendor's real source
 * address, and the vendor hands that body to its client as vendors do. Paths choose how the vendor
 * answers (see the switch in startVendor); every body it sent is kept for byte-for-byte comparisons.
 * `?from=N` makes that call leave from 127.0.0.N instead (a vendor whose egress changes per call);
 * `/echo?q=` is a vendor 404 page that shows the visitor's query, as many search and 404 pages do.
 */
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import type { Test } from 'tap';
import { Agent, request } from 'undici';
import { FakeWecom } from '../helpers/fake-wecom.ts';
import { CA } from '../helpers/gateway.ts';

export const CORP = 'wwvendorcorp01';
export const SECRET = 'vendor-held-secret-0123456789abcdefghijkl';
/** Where the vendor's WeCom calls leave from (not in the app's 企业可信IP). */
export const VENDOR_IP = '127.0.0.3';

export interface Vendor {
  readonly url: string;
  readonly fake: FakeWecom;
  /** Every body the vendor answered, in order. */
  readonly sent: Buffer[];
  /** Every access token the fake issued to the vendor (for "never shown" assertions). */
  readonly tokens: string[];
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Bodies that are not WeCom's JSON but carry its number somewhere, or break every rule. */
export const MALFORMED: Readonly<Record<string, string>> = {
  truncated: '{"errcode":60020,"errmsg":"not allow to access from your ip, hint: [17',
  'not-json': 'errcode 60020 48002 \u0000\u00ff {{{{',
  'bad-types': '{"errcode":{"errcode":[60020]},"errmsg":60020}',
  proto: '{"__proto__":{"errcode":60020},"constructor":{"errcode":48002},"x":"60020"}',
  deep: `${'{"a":'.repeat(2000)}60020${'}'.repeat(2000)}`,
  'deep-array': `${'['.repeat(5000)}{"errcode":60020}${']'.repeat(5000)}`,
  'huge-hint': `{"errcode":60020,"errmsg":"hint: [${'9'.repeat(5000)}], from ip: ${'1'.repeat(60)}"}`,
  'bad-utf8': Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x36, 0x30, 0x30, 0x32, 0x30, 0x7d]).toString('latin1'),
};

/** Start the fake WeCom and the vendor in front of it; both closed in t.teardown. */
export async function startVendor(t: Test): Promise<Vendor> {
  const fake = await FakeWecom.start(t);
  fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });
  const dispatchers = new Map<string, Agent>();
  t.teardown(() => Promise.all([...dispatchers.values()].map((d) => d.destroy())));
  /** The vendor's WeCom client leaving from `localAddress`, one per address. */
  const egress = (localAddress: string): Agent => {
    let d = dispatchers.get(localAddress);
    if (d === undefined) dispatchers.set(localAddress, (d = new Agent({ connect: { ca: CA, timeout: 2000 }, localAddress })));
    return d;
  };
  const sent: Buffer[] = [];
  const tokens: string[] = [];

  /** The vendor's own WeCom call from `from`: gettoken, then `api`; WeCom's answer as it came. */
  const callWecom = async (api: string, from: string): Promise<{ type: string; body: Buffer }> => {
    const dispatcher = egress(from);
    const tok = await request(`${fake.url}/cgi-bin/gettoken?corpid=${CORP}&corpsecret=${SECRET}`, { dispatcher });
    const token = ((await tok.body.json()) as { access_token: string }).access_token;
    tokens.push(token);
    const res = await request(`${fake.url}${api}?access_token=${token}&userid=zhangsan`, { dispatcher });
    return { type: String(res.headers['content-type']), body: Buffer.from(await res.body.arrayBuffer()) };
  };

  const answer = (res: ServerResponse, status: number, headers: Record<string, string | number>, body: Buffer, chunks = 1) => {
    sent.push(body);
    res.writeHead(status, headers);
    const size = Math.ceil(body.length / chunks);
    for (let i = 0; i < chunks - 1; i++) res.write(body.subarray(i * size, (i + 1) * size));
    res.end(body.subarray((chunks - 1) * size));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://vendor');
    const status = Number(url.searchParams.get('status') ?? 200);
    const path = url.pathname;
    if (path.startsWith('/malformed/')) {
      const body = Buffer.from(MALFORMED[path.slice(11)] ?? '', 'latin1');
      return answer(res, status, { 'content-type': 'application/json', 'content-length': body.length }, body);
    }
    if (path === '/ok') {
      const body = Buffer.from('{"errcode":0,"errmsg":"ok","id":60020}');
      return answer(res, status, { 'content-type': 'application/json', 'content-length': body.length }, body);
    }
    if (path === '/echo') {
      const body = Buffer.from(
        `<!doctype html><html><body><h1>404</h1><p>Nothing found for ${url.searchParams.get('q') ?? ''}</p></body></html>`,
      );
      return answer(res, 404, { 'content-type': 'text/html; charset=utf-8', 'content-length': body.length }, body);
    }
    if (path === '/forbidden') fake.failNext('/cgi-bin/user/get', 48002);
    const from = url.searchParams.has('from') ? `127.0.0.${Number(url.searchParams.get('from'))}` : VENDOR_IP;
    const w = await callWecom(path === '/forbidden' ? '/cgi-bin/user/get' : '/cgi-bin/get_api_domain_ip', from);
    const json = { 'content-type': w.type };
    switch (path) {
      case '/wecom':
      case '/forbidden':
        return answer(res, status, { ...json, 'content-length': w.body.length, 'set-cookie': 'vsess=1; Path=/' }, w.body);
      case '/wecom-chunked':
        // No Content-Length: the size is only known as the bytes come (in three chunks).
        return answer(res, status, json, w.body, 3);
      case '/large': {
        const o = JSON.parse(w.body.toString('utf8')) as Record<string, unknown>;
        const body = Buffer.from(JSON.stringify({ ...o, pad: 'x'.repeat(20_000) }));
        return answer(res, status, { ...json, 'content-length': body.length }, body);
      }
      case '/large-chunked': {
        const body = Buffer.concat([w.body, Buffer.alloc(20_000, 0x20)]);
        return answer(res, status, json, body, 8);
      }
      case '/binary':
        return answer(res, status, { 'content-type': 'application/octet-stream', 'content-length': w.body.length }, w.body);
      case '/gzip': {
        const body = gzipSync(w.body);
        return answer(res, status, { ...json, 'content-encoding': 'gzip', 'content-length': body.length }, body);
      }
      case '/html': {
        const body = Buffer.from(
          `<!doctype html><html><body><h1>出错了</h1><pre>${escapeHtml(w.body.toString('utf8'))}</pre></body></html>`,
        );
        return answer(res, status, { 'content-type': 'text/html; charset=utf-8', 'content-length': body.length }, body);
      }
      case '/nested': {
        const body = Buffer.from(JSON.stringify({ code: 500, msg: '获取用户信息失败', data: JSON.parse(w.body.toString('utf8')) }));
        return answer(res, status, { ...json, 'content-length': body.length }, body);
      }
      default:
        res.writeHead(404).end();
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      res.destroy(e as Error);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, fake, sent, tokens };
}

export interface RawReply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** GET through the gateway with the given Host and headers; the body as bytes. */
export function get(port: number, host: string, path: string, headers: Record<string, string> = {}): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host, ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** What a browser sends when the user opens a page. */
export const NAVIGATION = {
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'sec-fetch-mode': 'navigate',
  'sec-fetch-dest': 'document',
  'user-agent': 'Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36 wxwork/4.1.22 MicroMessenger/7.0.1',
};
