/**
 * findVendorError, vendorAction, explanationPage: pure functions, table-driven. The WeCom texts are the
 * fake WeCom's (test/helpers/fake-wecom.ts), which has the real errmsg shape.
 */
import t from 'tap';
import { explanationPage, findVendorError, vendorAction } from '../../src/diagnostics/index.ts';
import { errmsgTail } from '../helpers/fake-wecom.ts';

const wecom60020 = JSON.stringify({ errcode: 60020, errmsg: `not allow to access from your ip, ${errmsgTail('120.27.208.144', 60020)}` });
const wecom48002 = JSON.stringify({ errcode: 48002, errmsg: `api forbidden, ${errmsgTail('47.111.68.103', 48002)}` });
const html = (s: string) => s.replace(/"/g, '&quot;');

const cases: { name: string; body: string; want: Record<string, unknown> | undefined }[] = [
  { name: "WeCom's 60020 JSON", body: wecom60020, want: { errcode: 60020, fromIp: '120.27.208.144', form: 'raw', raw: true } },
  { name: "WeCom's 48002 JSON", body: wecom48002, want: { errcode: 48002, fromIp: '47.111.68.103', form: 'raw', raw: true } },
  {
    name: 'a 60020 with an empty from ip',
    body: '{"errcode":60020,"errmsg":"not allow to access from your ip, hint: [1], from ip: , more"}',
    want: { errcode: 60020, hint: '1', form: 'raw' },
  },
  {
    name: 'the old hint format',
    body: '{"errcode":60020,"errmsg":"x, hint: [1593488288_61_3281e2ff], from ip: 1.2.3.4"}',
    want: { hint: '1593488288_61_3281e2ff', fromIp: '1.2.3.4', form: 'raw' },
  },
  {
    name: 'an IPv6 from ip',
    body: '{"errcode":60020,"errmsg":"x, hint: [1], from ip: 2001:db8::1, more"}',
    want: { fromIp: '2001:db8::1', form: 'raw' },
  },
  {
    name: 'pretty-printed, after leading whitespace',
    body: `\r\n  ${JSON.stringify(JSON.parse(wecom60020), null, 2)}\n`,
    want: { errcode: 60020, fromIp: '120.27.208.144', form: 'raw' },
  },
  {
    name: 'nested in the vendor JSON',
    body: `{"code":500,"data":{"result":[${wecom60020}]}}`,
    want: { errcode: 60020, fromIp: '120.27.208.144', form: 'envelope', raw: false },
  },
  {
    name: 'in an envelope after the vendor errcode',
    body: `{"errcode":-1,"msg":"获取用户信息失败","data":${wecom48002}}`,
    want: { errcode: 48002, fromIp: '47.111.68.103', form: 'envelope' },
  },
  // Text that only shows the number: counted, never an incident, no IP or hint taken (review F3).
  { name: 'as a string in the vendor JSON', body: JSON.stringify({ code: -1, msg: wecom60020 }), want: { errcode: 60020, form: 'text' } },
  { name: 'HTML-escaped in a page', body: `<html><pre>${html(wecom48002)}</pre></html>`, want: { errcode: 48002, form: 'text' } },
  { name: 'a JSONP callback', body: `cb(${wecom60020})`, want: { errcode: 60020, form: 'text' } },
  {
    name: "a vendor 404 page echoing the visitor's query",
    body: '<html><body>Nothing found for errcode:60020 from ip: 10.66.1.2</body></html>',
    want: { errcode: 60020, form: 'text' },
  },
  { name: 'errcode as a JSON string', body: '{"errcode":"60020","errmsg":"from ip: 1.2.3.4"}', want: { errcode: 60020, form: 'text' } },
  { name: 'truncated JSON', body: '{"errcode":60020,"errmsg":"not allow', want: { errcode: 60020, form: 'text' } },
  // The keys the parser could mistake for the prototype are never followed; the text still shows the errcode.
  {
    name: 'prototype keys',
    body: '{"__proto__":{"errcode":60020},"constructor":{"errcode":60020}}',
    want: { errcode: 60020, form: 'text' },
  },
  { name: 'errcode 0 with 60020 elsewhere', body: '{"errcode":0,"errmsg":"ok","userid":"60020"}', want: undefined },
  { name: 'errcode 600201', body: '{"errcode":600201,"errmsg":"x"}', want: undefined },
  { name: 'errcode 60020.5', body: '{"errcode":60020.5,"errmsg":"x"}', want: undefined },
  { name: 'neither number', body: '{"errcode":60011,"errmsg":"no privilege"}', want: undefined },
  { name: 'a page mentioning the numbers', body: '<html><body>Order 60020 costs 48002 yuan; errno=60020</body></html>', want: undefined },
  {
    name: 'a bogus from ip',
    body: '{"errcode":60020,"errmsg":"hint: [x], from ip: 999.1.1.1"}',
    want: { errcode: 60020, hint: 'x', form: 'raw' },
  },
];

t.test('findVendorError: finds 60020 / 48002 by errcode, with from ip and hint, when bodies take these shapes', async (t) => {
  for (const c of cases) {
    const got = findVendorError(Buffer.from(c.body));
    if (c.want === undefined) t.equal(got, undefined, c.name);
    else t.match(got, c.want, c.name);
    if (got?.form === 'text') t.same(got, { errcode: got.errcode, form: 'text', raw: false }, `${c.name}: no IP, no hint`);
  }
  const noIp = findVendorError(Buffer.from(cases[2]?.body ?? ''));
  t.notOk(noIp && 'fromIp' in noIp, 'an empty from ip is left out');
});

const SCAN = 16 * 1024;
const fill = (unit: string) => Buffer.from(unit.repeat(Math.ceil(SCAN / unit.length)).slice(0, SCAN - 5) + '60020');

t.test(
  'findVendorError: takes no IP from a 16 KiB body and never parses it when it repeats needles, errcode runs or nests deep (review F10)',
  async (t) => {
    // The review's adversarial bodies (14-scan-cpu.mjs) and JSON beyond the small-envelope bounds: bounded work, the same answers.
    const deepEnvelope = `${'{"a":'.repeat(5)}${wecom60020}${'}'.repeat(5)}`;
    const wideEnvelope = `{"errcode":-1,${Array.from({ length: 300 }, (_, i) => `"k${i}":${i}`).join(',')},"data":${wecom60020}}`;
    const bodies: [string, Buffer, Record<string, unknown> | undefined][] = [
      ['repeated needles', fill('60020 '), undefined],
      ['errcode runs', fill('errcode        '), undefined],
      ['escaped errcode runs', fill('errcode\\"        :        \\"6002'), undefined],
      ['deep arrays', Buffer.from(`${'['.repeat(8000)}60020${']'.repeat(8000)}`), undefined],
      ['deep objects', Buffer.from(`${'{"a":'.repeat(2500)}60020${'}'.repeat(2500)}`), undefined],
      ['from ip runs', fill('from ip: 1.1.1.1 errcode:60020 hint: ['), { errcode: 60020, form: 'text' }],
      ['errcode keys', fill('{"errcode":60020,'), { errcode: 60020, form: 'text' }],
      ['an envelope nested 6 deep', Buffer.from(deepEnvelope), { errcode: 60020, form: 'text' }],
      ['an envelope of 300 fields', Buffer.from(wideEnvelope), { errcode: 60020, form: 'text' }],
      [
        'escaped quotes',
        Buffer.from(`{"errcode":60020,"errmsg":"${'\\"'.repeat(300)} from ip: 1.2.3.4"}`),
        { errcode: 60020, form: 'text' },
      ],
    ];
    for (const [name, body, want] of bodies) {
      t.ok(body.length <= SCAN, `${name}: within the scanned size`);
      const got = findVendorError(body);
      if (want === undefined) t.equal(got, undefined, name);
      else t.same(got, { ...want, raw: false }, name);
    }
    // Just inside the bounds: WeCom's JSON four levels down, and a raw error whose long hint is one string.
    t.match(findVendorError(Buffer.from(`{"a":{"b":[${wecom60020}]}}`)), { form: 'envelope', fromIp: '120.27.208.144' });
    const longHint = `{"errcode":60020,"errmsg":"hint: [${'9'.repeat(12_000)}], from ip: 1.2.3.4"}`;
    t.match(findVendorError(Buffer.from(longHint)), { form: 'raw', fromIp: '1.2.3.4' });
  },
);

t.test('vendorAction: names the vendor IP, 企业可信IP, the 服务商 IP白名单 and the relay when the vendor got 60020', async (t) => {
  const a = vendorAction({ errcode: 60020, fromIp: '120.27.208.144' }, 'ecard', '一卡通');
  t.match(
    a.en,
    /^Vendor IP not trusted: WeCom refused a call the vendor behind route "ecard" made from 120\.27\.208\.144 \(errcode 60020\)/,
  );
  t.match(a.en, /120\.27\.208\.144 must be in 应用管理 › 一卡通 › 企业可信IP .*服务商 IP白名单.*relay/);
  t.match(a.zh, /120\.27\.208\.144.*应用管理 › 一卡通 › 企业可信IP.*服务商 IP白名单.*中转/);
  const unnamed = vendorAction({ errcode: 60020 }, 'ecard', undefined);
  t.match(unnamed.en, /an address WeCom did not name.*应用管理 › <the vendor's app> › 企业可信IP/);
  t.match(unnamed.zh, /应用管理 › <该服务商的应用> › 企业可信IP/);
  const forbidden = vendorAction({ errcode: 48002, fromIp: '1.2.3.4' }, 'ecard', '一卡通');
  t.match(forbidden.en, /^Vendor API forbidden: .*from 1\.2\.3\.4 \(errcode 48002/);
  t.match(forbidden.zh, /48002.*应用管理 › 一卡通/);
});

t.test('explanationPage: escapes everything taken from the response when the hint holds markup', async (t) => {
  const e = { errcode: 60020 as const, form: 'raw' as const, fromIp: '1.2.3.4', hint: '<script>alert(1)</script>', raw: true };
  const page = explanationPage(e, vendorAction(e, 'r<1>', '<b>app</b>'), 'r<1>', 'req-1');
  t.notMatch(page, /<script>|<b>app/);
  t.match(page, /&#60;script&#62;/);
  t.match(page, /request id req-1/);
  t.match(page, /服务暂时无法使用/);
  t.match(page, /This service cannot be used right now/);
});
