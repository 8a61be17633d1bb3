/**
 * The bench's API relay case: the fake WeCom of the tests (test/helpers/fake-wecom.ts, HTTPS with the
 * test CA) runs as its own process on the load core, wegate's bench config gains a `wecom:` app and a
 * relay client, and wrk calls `/.wegate/relay/cgi-bin/user/get` through wegate with the client's bearer
 * token, then the same API on the fake direct with a token (`direct-wecom`). The relay's CPU per request
 * is compared with the plain proxy route's (wegate small c64) measured in the same run, and with a
 * proxy route to the same fake over TLS (`/wecom-proxy/…`, the vendor calling WeCom through an
 * ordinary route with its own token): that ratio is the relay's own cost, TLS leg excluded.
 *
 * `node test/bench/relay.ts fake PORT [https|http]` is the fake's process (`--relay-wecom http` runs it
 * without TLS, to show how much of the relay's CPU is the TLS leg to WeCom).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { FakeWecom } from '../helpers/fake-wecom.ts';
import { type Started, start } from './proc.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CA_FILE = path.join(ROOT, 'test/fixtures/tls/ca.pem');
const CORP = 'wwbenchcorp0001';
const SECRET = 'bench-app-secret-0123456789abcdefghijklmnop';
/** The relay client's bearer token (the config holds its SHA-256). */
export const RELAY_TOKEN = 'bench-relay-token-Zq4w7Yb2Kx9Lm3Pn';
export const RELAY_PATH = '/.wegate/relay/cgi-bin/user/get?userid=zhangsan';
export const RELAY_HEADERS = [`Authorization: Bearer ${RELAY_TOKEN}`];
/** A plain proxy route to the same fake over TLS (`/wecom-proxy/…` → the fake): what proxying that call costs. */
export const PROXIED_PREFIX = '/wecom-proxy';
export function proxiedRouteLines(fakeUrl: string): string[] {
  return [
    '  - name: wecom-proxy',
    `    path: ${PROXIED_PREFIX}/`,
    '    strip_prefix: true',
    `    upstream: "${fakeUrl}"`,
    `    tls: { ca_file: "${CA_FILE}" }`,
  ];
}

/**
 * The `wecom:` and `relay:` sections of wegate's bench config (YAML lines); the app secret is
 * written to a file in `dir` (\`wegate serve\` reads \`secret: { env }\` only when the CLI hands it the
 * environment).
 */
export function relayConfigLines(fakeUrl: string, dir: string): string[] {
  const secretFile = path.join(dir, 'ecard.secret');
  fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  return [
    'wecom:',
    `  api_base: "${fakeUrl}"`,
    `  ca_file: "${CA_FILE}"`,
    `  corp_id: ${CORP}`,
    '  apps:',
    '    - name: ecard',
    `      secret: { file: "${secretFile}" }`,
    'relay:',
    '  clients:',
    '    - name: bench',
    '      app: ecard',
    `      token_sha256: "${createHash('sha256').update(RELAY_TOKEN).digest('hex')}"`,
    '      apis: [/cgi-bin/user/get]',
    '      rate: { per_second: 100000, burst: 1000000 }',
  ];
}

/** Start the fake WeCom as its own process (pinned to `core`); `tls` false only to see what TLS costs the relay. */
export function startFakeWecom(node: string, port: number, core: number | undefined, stderr: string, tls = true): Started {
  return start('fake-wecom', node, [fileURLToPath(import.meta.url), 'fake', String(port), tls ? 'https' : 'http'], { core, stderr });
}

const tlsAgent = () => new Agent({ connect: { ca: fs.readFileSync(CA_FILE) } });

/** A token from the fake (for the direct case) and the direct URL that uses it. */
export async function directUrl(fakeUrl: string): Promise<string> {
  const dispatcher = tlsAgent();
  try {
    const r = await request(`${fakeUrl}/cgi-bin/gettoken?corpid=${CORP}&corpsecret=${SECRET}`, { dispatcher });
    const { access_token } = (await r.body.json()) as { access_token?: string };
    if (!access_token) throw new Error('the fake WeCom issued no token');
    return `${fakeUrl}/cgi-bin/user/get?userid=zhangsan&access_token=${access_token}`;
  } finally {
    await dispatcher.close();
  }
}

/** GET through the relay and direct: both 200 with errcode 0 and the same body; resolves the body length. */
export async function checkRelay(relayUrl: string, direct: string): Promise<number> {
  const dispatcher = tlsAgent();
  try {
    const viaRelay = await request(relayUrl, { dispatcher, headers: { authorization: `Bearer ${RELAY_TOKEN}` } });
    const a = await viaRelay.body.text();
    const d = await request(direct, { dispatcher });
    const b = await d.body.text();
    if (viaRelay.statusCode !== 200 || d.statusCode !== 200) throw new Error(`relay ${viaRelay.statusCode}, direct ${d.statusCode}`);
    if (!a.startsWith('{"errcode":0,') || a !== b) throw new Error(`relay answered ${a.slice(0, 200)}, direct ${b.slice(0, 200)}`);
    return Buffer.byteLength(a);
  } finally {
    await dispatcher.close();
  }
}

if (process.argv[2] === 'fake') {
  const fake = await FakeWecom.listen(Number(process.argv[3]), { tls: process.argv[4] !== 'http' });
  fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  // The same answer every time (the default user/get echoes the userid); no growing request log.
  setInterval(() => {
    fake.requests.length = 0;
  }, 1000);
  process.on('SIGTERM', () => void fake.close().then(() => process.exit(0)));
}
