/**
 * WeCom errors in vendor responses, end to end: the real gateway in front of a vendor upstream that
 * really calls the fake WeCom from 127.0.0.3 (not in the app's 企业可信IP) and relays WeCom's answer.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ADMIN, LOOPBACK, makeConfig, type Running, startGateway, TLS_DIR } from '../helpers/gateway.ts';
import { parseExposition, valueOf } from '../helpers/prom-text.ts';
import { CORP, get, MALFORMED, NAVIGATION, SECRET, startVendor, type Vendor, VENDOR_IP } from './helpers.ts';

const EXPLAIN = 'ecard.school.test';
const PLAIN = 'plain.school.test';
const OFF = 'off.school.test';

async function setup(t: Test): Promise<{ gw: Running; vendor: Vendor }> {
  const vendor = await startVendor(t);
  const gw = await startGateway(
    t,
    makeConfig({
      listen: LOOPBACK,
      admin: ADMIN,
      routes: [
        { name: 'ecard-vendor', host: EXPLAIN, upstream: vendor.url, wecom_errors: { explain: true, app: '一卡通' } },
        { name: 'plain-vendor', host: PLAIN, upstream: vendor.url },
        { name: 'off-vendor', host: OFF, upstream: vendor.url, wecom_errors: { scan: false } },
      ],
    }),
  );
  return { gw, vendor };
}

const vendorWarnings = (gw: Running) => gw.logs.lines.filter((l) => typeof l['incident'] === 'string' && l['source'] === 'vendor');

t.test(
  "wecom error scan: records the vendor's 60020 with the vendor's from ip, count 2, logged once, when two responses relay WeCom's JSON",
  async (t) => {
    const { gw, vendor } = await setup(t);
    for (let i = 0; i < 2; i++) {
      const r = await get(gw.httpPort, PLAIN, '/wecom?page=1');
      t.equal(r.status, 200);
      t.ok(r.body.equals(vendor.sent.at(-1) as Buffer), 'the body passes byte for byte');
      t.match(
        r.body.toString(),
        /^\{"errcode":60020,"errmsg":"not allow to access from your ip, hint: \[\d+\], from ip: 127\.0\.0\.3, more info at/,
      );
    }
    t.same(
      vendor.fake.requests.filter((q) => q.path === '/cgi-bin/get_api_domain_ip').map((q) => q.from),
      [VENDOR_IP, VENDOR_IP],
      'WeCom saw the vendor pinned to 127.0.0.3',
    );
    const [incident, ...more] = gw.gw.incidents.list();
    t.same(more, []);
    t.match(incident, {
      app: 'plain-vendor',
      api: '/',
      cause: 'vendor_ip_not_trusted',
      errcode: 60020,
      fromIp: VENDOR_IP,
      source: 'vendor',
      path: '/wecom',
      count: 2,
    });
    t.match(incident?.hint, /^\d+$/);
    t.match(incident?.en, /^Vendor IP not trusted: .*127\.0\.0\.3.*企业可信IP.*relay/);
    t.match(incident?.zh, /127\.0\.0\.3.*企业可信IP/);
    t.equal(incident?.firstSeen !== undefined && incident.lastSeen >= incident.firstSeen, true);
    const warned = vendorWarnings(gw);
    t.equal(warned.length, 1, 'logged once for one distinct cause');
    t.match(warned[0], { incident: 'vendor_ip_not_trusted', app: 'plain-vendor', from_ip: VENDOR_IP, errcode: 60020 });
    const m = parseExposition(await gw.registry.metrics());
    t.equal(valueOf(m, 'wegate_wecom_incidents_total', { app: 'plain-vendor', cause: 'vendor_ip_not_trusted' }), 2);
    t.notMatch(gw.logs.text(), SECRET, 'the vendor secret is in no log line');
    for (const token of vendor.tokens) t.notMatch(gw.logs.text(), token, 'no access token in the logs');
  },
);

t.test("wecom error scan: records the vendor's 48002 as vendor_api_forbidden when WeCom forbids the API", async (t) => {
  const { gw, vendor } = await setup(t);
  const r = await get(gw.httpPort, PLAIN, '/forbidden');
  t.ok(r.body.equals(vendor.sent.at(-1) as Buffer));
  t.match(r.body.toString(), /^\{"errcode":48002,"errmsg":"api forbidden, hint: /);
  t.match(gw.gw.incidents.list(), [{ cause: 'vendor_api_forbidden', errcode: 48002, fromIp: VENDOR_IP, count: 1, source: 'vendor' }]);
  t.match(gw.gw.incidents.list()[0]?.en, /48002.*应用管理 › <the vendor's app>/);
});

t.test('wecom error scan: records the 60020 when the body comes chunked without Content-Length', async (t) => {
  const { gw, vendor } = await setup(t);
  const r = await get(gw.httpPort, PLAIN, '/wecom-chunked');
  t.equal(r.headers['content-length'], undefined, 'streamed as it came');
  t.ok(r.body.equals(vendor.sent.at(-1) as Buffer));
  t.match(gw.gw.incidents.list(), [{ cause: 'vendor_ip_not_trusted', fromIp: VENDOR_IP, path: '/wecom-chunked' }]);
});

t.test(
  "wecom error scan: records WeCom's error in the vendor's JSON envelope and only counts a page showing it when the vendor wraps or renders WeCom's answer",
  async (t) => {
    const { gw, vendor } = await setup(t);
    for (const path of ['/html', '/nested']) {
      const r = await get(gw.httpPort, EXPLAIN, path, NAVIGATION);
      t.ok(r.body.equals(vendor.sent.at(-1) as Buffer), `${path}: not a raw JSON page, so not replaced`);
    }
    t.match(gw.gw.incidents.list(), [
      { cause: 'vendor_ip_not_trusted', fromIp: VENDOR_IP, count: 1, app: 'ecard-vendor', path: '/nested' },
    ]);
    t.equal(gw.gw.incidents.list().length, 1, 'the HTML page is no incident');
    const m = parseExposition(await gw.registry.metrics());
    t.equal(valueOf(m, 'wegate_wecom_vendor_error_mentions_total', { route: 'ecard-vendor', errcode: '60020' }), 1, 'the page is counted');
    t.equal(valueOf(m, 'wegate_wecom_incidents_total', { app: 'ecard-vendor', cause: 'vendor_ip_not_trusted' }), 1);
  },
);

/** The gateway in front of the vendor, with its own WeCom client leaving from 127.0.0.1 (not trusted by the fake). */
async function setupWithOwnIncident(t: Test): Promise<{ gw: Running; vendor: Vendor }> {
  const vendor = await startVendor(t);
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [{ name: 'plain-vendor', host: PLAIN, upstream: vendor.url }],
    wecom: {
      api_base: vendor.fake.url,
      ca_file: join(TLS_DIR, 'ca.pem'),
      corp_id: CORP,
      probe: { enabled: false },
      apps: [{ name: 'ecard', secret: { env: 'ECARD_SECRET' } }],
    },
  });
  const gw = await startGateway(t, config, { env: { ECARD_SECRET: SECRET } });
  await t.rejects(gw.gw.wecom?.call('ecard', '/cgi-bin/get_api_domain_ip') ?? Promise.reject(new Error('no WeCom client')));
  t.match(gw.gw.incidents.list(), [{ app: 'ecard', cause: 'not_in_trusted_ip', fromIp: '127.0.0.1', source: undefined }]);
  return { gw, vendor };
}

/** `n` GETs, `width` at a time (bounded); the statuses seen. */
async function many(n: number, width: number, one: (i: number) => Promise<number>): Promise<Set<number>> {
  const statuses = new Set<number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) statuses.add(await one(next++));
    }),
  );
  return statuses;
}

t.test(
  "wecom error scan: records no incident, logs nothing and keeps wegate's own incident when 300 anonymous requests make a vendor page echo errcode 60020 with chosen from ips (review F3)",
  async (t) => {
    const { gw } = await setupWithOwnIncident(t);
    const q = (i: number) => encodeURIComponent(`errcode:60020 from ip: 10.66.${i >> 8}.${i & 255}`);
    const statuses = await many(300, 8, async (i) => (await get(gw.httpPort, PLAIN, `/echo?q=${q(i)}`, NAVIGATION)).status);
    t.same([...statuses], [404], "the vendor's 404 page, passed through");
    t.match(gw.gw.incidents.list(), [{ app: 'ecard', cause: 'not_in_trusted_ip', fromIp: '127.0.0.1' }]);
    t.equal(gw.gw.incidents.list().length, 1, 'no vendor incident from an echoed page');
    t.same(vendorWarnings(gw), [], 'no vendor incident logged');
    const notAccess = gw.logs.lines.filter((l) => l['url'] === undefined);
    t.notMatch(JSON.stringify(notAccess), /10\.66\./, 'no chosen IP in any log line but the access log of the request');
    const m = parseExposition(await gw.registry.metrics());
    t.equal(valueOf(m, 'wegate_wecom_vendor_error_mentions_total', { route: 'plain-vendor', errcode: '60020' }), 300, 'counted');
    t.equal(valueOf(m, 'wegate_wecom_incidents_total', { app: 'plain-vendor', cause: 'vendor_ip_not_trusted' }), undefined);
  },
);

t.test(
  "wecom error scan: keeps 64 vendor incidents and wegate's own, logging 10 and one pause line, when the vendor's WeCom calls come from 70 addresses (review F3)",
  async (t) => {
    const { gw, vendor } = await setupWithOwnIncident(t);
    const statuses = await many(70, 4, async (i) => (await get(gw.httpPort, PLAIN, `/wecom?from=${10 + i}`)).status);
    t.same([...statuses], [200]);
    const seen = new Set(
      vendor.fake.requests.filter((q) => q.path === '/cgi-bin/get_api_domain_ip' && q.from !== '127.0.0.1').map((q) => q.from),
    );
    t.equal(seen.size, 70, 'WeCom saw 70 distinct vendor addresses');
    const list = gw.gw.incidents.list();
    t.equal(list.filter((i) => i.source === 'vendor').length, 64, "the vendor's bucket is full");
    t.match(
      list.filter((i) => i.source !== 'vendor'),
      [{ app: 'ecard', cause: 'not_in_trusted_ip', fromIp: '127.0.0.1' }],
      "wegate's own incident is kept",
    );
    t.ok(
      list.filter((i) => i.source === 'vendor').every((i) => i.fromIp !== undefined && seen.has(i.fromIp)),
      'each vendor incident names an address WeCom really saw',
    );
    t.equal(vendorWarnings(gw).length, 10, 'at most 10 new vendor incidents logged in a minute');
    t.equal(gw.logs.lines.filter((l) => l['vendor_logs_per_minute'] === 10).length, 1, 'one line says the rest are only counted');
    const m = parseExposition(await gw.registry.metrics());
    t.equal(valueOf(m, 'wegate_wecom_incidents_total', { app: 'plain-vendor', cause: 'vendor_ip_not_trusted' }), 70, 'all counted');
  },
);

t.test('wecom error scan: records nothing when the response is large, binary, gzip-encoded or on a route with scan off', async (t) => {
  const { gw, vendor } = await setup(t);
  const cases: [string, string][] = [
    [PLAIN, '/large'],
    [PLAIN, '/large-chunked'],
    [PLAIN, '/binary'],
    [PLAIN, '/gzip'],
    [OFF, '/wecom'],
    [OFF, '/wecom-chunked'],
    [EXPLAIN, '/large-chunked'],
    [EXPLAIN, '/gzip'],
  ];
  for (const [host, path] of cases) {
    const r = await get(gw.httpPort, host, path, host === EXPLAIN ? NAVIGATION : {});
    t.equal(r.status, 200, `${host}${path}`);
    t.ok(r.body.equals(vendor.sent.at(-1) as Buffer), `${host}${path}: byte for byte`);
  }
  t.match((await get(gw.httpPort, PLAIN, '/gzip')).headers['content-encoding'], 'gzip');
  t.same(gw.gw.incidents.list(), []);
  t.same(vendorWarnings(gw), []);
});

t.test('wecom error scan: a browser navigation on an explain route gets the bilingual page with the same status', async (t) => {
  const { gw, vendor } = await setup(t);
  for (const status of [200, 502]) {
    const r = await get(gw.httpPort, EXPLAIN, `/wecom?status=${status}`, NAVIGATION);
    t.equal(r.status, status, 'the original status is kept');
    t.match(r.headers['content-type'], /^text\/html; charset=utf-8$/);
    t.equal(r.headers['content-length'], String(r.body.length));
    t.equal(r.headers['cache-control'], 'no-store');
    t.same(r.headers['set-cookie'], ['vsess=1; Path=/'], "the vendor's cookies are kept");
    const page = r.body.toString('utf8');
    t.match(page, /^<!doctype html><html lang="zh-CN">/);
    t.match(page, /服务暂时无法使用/);
    t.match(page, /This service cannot be used right now/);
    t.match(page, /应用管理 › 一卡通 › 企业可信IP/);
    t.match(page, /127\.0\.0\.3/);
    t.match(page, new RegExp(`request id ${r.headers['x-request-id'] as string}`), 'the request id of the response');
    t.notMatch(page, /"errcode"/, 'not the raw JSON');
    t.notMatch(page, SECRET);
    for (const token of vendor.tokens) t.notMatch(page, token);
  }
  const redirect = await get(gw.httpPort, EXPLAIN, '/wecom?status=302', NAVIGATION);
  t.equal(redirect.status, 302);
  t.ok(redirect.body.equals(vendor.sent.at(-1) as Buffer), 'a redirect is not replaced (a browser never shows its body)');
  t.match(gw.gw.incidents.list(), [{ app: 'ecard-vendor', cause: 'vendor_ip_not_trusted', count: 3 }]);
});

t.test('wecom error scan: a script or API client on an explain route gets the original JSON byte for byte', async (t) => {
  const { gw, vendor } = await setup(t);
  const clients: Record<string, string>[] = [
    {},
    { accept: 'application/json' },
    { accept: 'text/html,*/*', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' },
  ];
  for (const headers of clients) {
    const r = await get(gw.httpPort, EXPLAIN, '/wecom', headers);
    t.match(r.headers['content-type'], /^application\/json/);
    t.ok(r.body.equals(vendor.sent.at(-1) as Buffer), `byte for byte for ${JSON.stringify(headers)}`);
  }
  const ok = await get(gw.httpPort, EXPLAIN, '/ok', NAVIGATION);
  t.ok(ok.body.equals(vendor.sent.at(-1) as Buffer), 'a browser gets an answer without a WeCom error unchanged');
  t.match(gw.gw.incidents.list(), [{ count: 3 }]);
});

t.test('wecom error scan: a malformed body passes unchanged and never crashes the gateway', async (t) => {
  const { gw, vendor } = await setup(t);
  for (const name of Object.keys(MALFORMED)) {
    for (const [host, headers] of [
      [PLAIN, {}],
      [EXPLAIN, NAVIGATION],
    ] as const) {
      const r = await get(gw.httpPort, host, `/malformed/${name}`, headers);
      t.equal(r.status, 200, `${name} on ${host}`);
      if (name === 'huge-hint' && host === EXPLAIN) {
        // Valid JSON with errcode 60020 at the top: a raw error page, explained; the oversized hint and
        // the impossible "from ip" are not taken from it.
        t.match(r.body.toString(), /服务暂时无法使用/);
        t.notMatch(r.body.toString(), /from ip 1|hint 9/);
      } else {
        t.ok(r.body.equals(vendor.sent.at(-1) as Buffer), `${name} on ${host}: byte for byte`);
      }
    }
  }
  const after = await get(gw.httpPort, PLAIN, '/wecom');
  t.equal(after.status, 200, 'the gateway still serves');
  t.same(
    gw.logs.lines.filter((l) => (l['level'] as number) >= 50),
    [],
    'no error logged',
  );
});
