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
  { name: "WeCom's 60020 JSON", body: wecom60020, want: { errcode: 60020, fromIp: '120.27.208.144', raw: true } },
  { name: "WeCom's 48002 JSON", body: wecom48002, want: { errcode: 48002, fromIp: '47.111.68.103', raw: true } },
  {
    name: 'a 60020 with an empty from ip',
    body: '{"errcode":60020,"errmsg":"not allow to access from your ip, hint: [1], from ip: , more"}',
    want: { errcode: 60020, hint: '1', raw: true },
  },
  {
    name: 'the old hint format',
    body: '{"errcode":60020,"errmsg":"x, hint: [1593488288_61_3281e2ff], from ip: 1.2.3.4"}',
    want: { hint: '1593488288_61_3281e2ff', fromIp: '1.2.3.4' },
  },
  {
    name: 'an IPv6 from ip',
    body: '{"errcode":60020,"errmsg":"x, hint: [1], from ip: 2001:db8::1, more"}',
    want: { fromIp: '2001:db8::1' },
  },
  {
    name: 'nested in the vendor JSON',
    body: `{"code":500,"data":{"result":[${wecom60020}]}}`,
    want: { errcode: 60020, fromIp: '120.27.208.144', raw: false },
  },
  {
    name: 'as a string in the vendor JSON',
    body: JSON.stringify({ code: -1, msg: wecom60020 }),
    want: { errcode: 60020, fromIp: '120.27.208.144', raw: false },
  },
  {
    name: 'HTML-escaped in a page',
    body: `<html><pre>${html(wecom48002)}</pre></html>`,
    want: { errcode: 48002, fromIp: '47.111.68.103', raw: false },
  },
  { name: 'a JSONP callback', body: `cb(${wecom60020})`, want: { errcode: 60020, raw: false } },
  { name: 'errcode 0 with 60020 elsewhere', body: '{"errcode":0,"errmsg":"ok","userid":"60020"}', want: undefined },
  { name: 'errcode 600201', body: '{"errcode":600201,"errmsg":"x"}', want: undefined },
  { name: 'neither number', body: '{"errcode":60011,"errmsg":"no privilege"}', want: undefined },
  { name: 'truncated JSON', body: '{"errcode":60020,"errmsg":"not allow', want: { errcode: 60020, raw: false } },
  {
    name: 'a bogus from ip',
    body: '{"errcode":60020,"errmsg":"hint: [x], from ip: 999.1.1.1"}',
    want: { errcode: 60020, hint: 'x', raw: true },
  },
  // The keys are dropped by the parser (no prototype reaches the scan); the text still shows the errcode.
  { name: 'prototype keys', body: '{"__proto__":{"errcode":60020},"constructor":{"errcode":60020}}', want: { errcode: 60020, raw: false } },
];

t.test('findVendorError: finds 60020 / 48002 by errcode, with from ip and hint, when bodies take these shapes', async (t) => {
  for (const c of cases) {
    const got = findVendorError(Buffer.from(c.body));
    if (c.want === undefined) t.equal(got, undefined, c.name);
    else t.match(got, c.want, c.name);
  }
  const noIp = findVendorError(Buffer.from(cases[2]?.body ?? ''));
  t.notOk(noIp && 'fromIp' in noIp, 'an empty from ip is left out');
});

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
  const e = { errcode: 60020 as const, fromIp: '1.2.3.4', hint: '<script>alert(1)</script>', raw: true };
  const page = explanationPage(e, vendorAction(e, 'r<1>', '<b>app</b>'), 'r<1>', 'req-1');
  t.notMatch(page, /<script>|<b>app/);
  t.match(page, /&#60;script&#62;/);
  t.match(page, /request id req-1/);
  t.match(page, /服务暂时无法使用/);
  t.match(page, /This service cannot be used right now/);
});
