/**
 * Wiring of the provider-event tests: the fake WeCom over TLS, a gateway with a 代开发 template
 * (suite "tpl"), its template callback (指令回调) and the authorised app "school" whose secret is the
 * stored permanent code, WeCom calls pinned to 127.0.0.2, a state directory that outlives one
 * gateway (restart tests), a vendor and a CallbackSender encrypting for the template id.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Test } from 'tap';
import { request } from 'undici';
import { CallbackSender, FakeWecom, type FakeSuite } from '../../helpers/fake-wecom.ts';
import { ADMIN, LOOPBACK, makeConfig, type Running, startGateway, TLS_DIR } from '../../helpers/gateway.ts';
import { tempDir } from '../../store/helpers.ts';
import { AES_KEY, SHARED, startVendor, TOKEN, type Vendor } from './helpers.ts';

export const TEMPLATE_ID = 'dktemplate01';
export const TEMPLATE_SECRET = 'template-secret-0123456789abcdefghijklmnopqrstu';
export const SCHOOL = 'wwschoolcorp01';
export const TICKET = 'suite-ticket-NEW-0123456789abcdefghijklmnopqrstuvw';
export const OLD_TICKET = 'suite-ticket-OLD-0123456789abcdefghijklmnopqrstuvw';
export const AUTH_CODE = 'auth-code-ONE-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdef';
export const AUTH_CODE_2 = 'auth-code-TWO-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdef';
export const PERMANENT = 'permanent-code-ONE-0123456789abcdefghijklmnopqrstu';
export const PERMANENT_2 = 'permanent-code-TWO-0123456789abcdefghijklmnopqrstu';
export const PATH = '/wecom/template';
export const V2 = '/cgi-bin/service/v2/get_permanent_code';
/** Every value that must appear in no log line, metric, diagnostics output or vendor notice. */
export const SECRETS = [TEMPLATE_SECRET, TICKET, OLD_TICKET, AUTH_CODE, AUTH_CODE_2, PERMANENT, PERMANENT_2];

export interface ProviderWorld {
  readonly fake: FakeWecom;
  readonly suite: FakeSuite;
  readonly vendor: Vendor;
  readonly stateDir: string;
  /** Start a gateway on the shared state directory (closed in teardown; close it earlier to restart). */
  start(): Promise<Running>;
  sender(gw: Running): CallbackSender;
}

export async function providerWorld(t: Test, opts: { state?: boolean } = {}): Promise<ProviderWorld> {
  const fake = await FakeWecom.start(t);
  const suite = fake.addSuite({ name: 'tpl', suiteId: TEMPLATE_ID, secret: TEMPLATE_SECRET, ticket: TICKET });
  const vendor = await startVendor(t);
  const stateDir = await tempDir(t, 'wegate-provider-');
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [{ upstream: 'http://127.0.0.1:1' }],
    egress: { pinned: { local_address: '127.0.0.2' } },
    ...(opts.state === false ? {} : { state: { dir: stateDir } }),
    wecom: {
      api_base: fake.url,
      ca_file: join(TLS_DIR, 'ca.pem'),
      egress: 'pinned',
      probe: { enabled: false },
      retry: { attempts: 1, base_delay_ms: 1 },
      apps: [{ name: 'school', kind: 'authorized', corp_id: SCHOOL, suite: 'tpl' }],
      suites: [{ name: 'tpl', kind: 'template', suite_id: TEMPLATE_ID, secret: { env: 'TPL_SECRET' } }],
      callbacks: [
        {
          name: 'tpl_cb',
          kind: 'suite',
          path: PATH,
          suite: 'tpl',
          token: { env: 'CB_TOKEN' },
          encoding_aes_key: { env: 'CB_AES_KEY' },
          deliver: { url: vendor.url, secret: { env: 'CB_SHARED' } },
        },
      ],
    },
  });
  const env = { TPL_SECRET: TEMPLATE_SECRET, CB_TOKEN: TOKEN, CB_AES_KEY: AES_KEY, CB_SHARED: SHARED };
  return {
    fake,
    suite,
    vendor,
    stateDir,
    start: () => startGateway(t, config, { env }),
    sender: (gw) =>
      new CallbackSender({
        origin: `http://127.0.0.1:${gw.httpPort}`,
        path: PATH,
        token: TOKEN,
        encodingAesKey: AES_KEY,
        receiveId: TEMPLATE_ID,
        retries: 0,
      }),
  };
}

/** A 指令回调 plaintext: `<xml><SuiteId>…</SuiteId><InfoType>…</InfoType><TimeStamp>…</TimeStamp>…</xml>`. */
export function suiteEvent(infoType: string, timestamp: number, extra: Record<string, string> = {}): string {
  const more = Object.entries(extra)
    .map(([k, v]) => `<${k}><![CDATA[${v}]]></${k}>`)
    .join('');
  return `<xml><SuiteId><![CDATA[${TEMPLATE_ID}]]></SuiteId><InfoType><![CDATA[${infoType}]]></InfoType><TimeStamp>${timestamp}</TimeStamp>${more}</xml>`;
}

/** Wait (bounded: about 10 s at most) until `cond` holds; fails the test when it never does. */
export async function until(t: Test, what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  t.fail(`never happened: ${what}`);
}

/** GET on the admin listener. */
export async function admin(gw: Running, path: string): Promise<string> {
  const res = await request(`http://127.0.0.1:${gw.adminPort}${path}`);
  return res.body.text();
}

type Rows = Record<string, unknown>[];
export async function diagnostics(gw: Running): Promise<{ provider: { suites: Rows; corps: Rows; authCodes: Rows } }> {
  return JSON.parse(await admin(gw, '/diagnostics?format=json')) as never;
}

/** The bytes of the store's files (database and WAL) as latin1 text, for "not in clear" checks. */
export async function storeBytes(dir: string): Promise<string> {
  const parts = await Promise.all(['state.db', 'state.db-wal'].map((f) => readFile(join(dir, f)).catch(() => Buffer.alloc(0))));
  return Buffer.concat(parts).toString('latin1');
}

/** No secret in the logs, the metrics, /diagnostics (JSON and HTML) or what the vendor got. */
export async function assertNoSecrets(t: Test, gw: Running, vendor: Vendor, secrets = SECRETS): Promise<void> {
  const places: [string, string][] = [
    ['logs', gw.logs.text()],
    ['metrics', await admin(gw, '/metrics')],
    ['diagnostics', await admin(gw, '/diagnostics?format=json')],
    ['diagnostics html', await admin(gw, '/diagnostics')],
    ['vendor', vendor.deliveries.map((d) => d.raw).join('\n')],
  ];
  for (const [where, text] of places) {
    const leaked = secrets.filter((s) => text.includes(s));
    t.same(leaked, [], `no ticket, AuthCode or code in ${where}`);
  }
}
