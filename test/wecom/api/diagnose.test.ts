/**
 * The pure diagnosis functions, table-driven: errmsg parsing across WeCom's message shapes, and the
 * classification of IP refusals by errcode, the IP WeCom saw, the expected IP, the pin and the kind of app.
 */
import t from 'tap';
import { credentialAdvice, diagnoseIp, type IpDiagnosisInput, normaliseIp, parseErrmsg } from '../../../src/wecom/api/index.ts';

const tail = (hint: string, ip: string, e: number) =>
  `hint: [${hint}], from ip: ${ip}, more info at https://open.work.weixin.qq.com/devtool/query?e=${e}`;

t.test('parseErrmsg: finds hint and from ip when WeCom errors share the tail', async (t) => {
  const cases: { name: string; errmsg: unknown; want: { hint?: string; fromIp?: string } }[] = [
    {
      name: '60020 new digits hint',
      errmsg: `not allow to access from your ip, ${tail('1706848717432011565347844', '120.27.208.144', 60020)}`,
      want: { hint: '1706848717432011565347844', fromIp: '120.27.208.144' },
    },
    {
      name: '42001 old ts_n_hex hint',
      errmsg: `access_token expired, ${tail('1576065934_28_e0fa4a2d3c0cb5c3e0cb2fbf0c5f5e3a', '9.30.0.138', 42001)}`,
      want: { hint: '1576065934_28_e0fa4a2d3c0cb5c3e0cb2fbf0c5f5e3a', fromIp: '9.30.0.138' },
    },
    {
      name: '40014 empty from ip',
      errmsg:
        'invalid access_token, hint: [1597733128_47_64fc], from ip: , more info at https://open.work.weixin.qq.com/devtool/query?e=40014',
      want: { hint: '1597733128_47_64fc' },
    },
    { name: '45009', errmsg: `api freq out of limit, ${tail('1', '47.111.68.103', 45009)}`, want: { hint: '1', fromIp: '47.111.68.103' } },
    { name: '48002', errmsg: `api forbidden, ${tail('2', '1.2.3.4', 48002)}`, want: { hint: '2', fromIp: '1.2.3.4' } },
    {
      name: '48009',
      errmsg: `api forbidden for contact assistant, ${tail('3', '1.2.3.5', 48009)}`,
      want: { hint: '3', fromIp: '1.2.3.5' },
    },
    { name: '50001', errmsg: `redirect_uri unauthorized, ${tail('4', '1.2.3.6', 50001)}`, want: { hint: '4', fromIp: '1.2.3.6' } },
    {
      name: '60011 with the odd space',
      errmsg: `no privilege to access/modify contact/party/agent , ${tail('5', '9.95.1.184', 60011)}`,
      want: { hint: '5', fromIp: '9.95.1.184' },
    },
    {
      name: 'IPv6 from ip',
      errmsg: `not allow to access from your ip, ${tail('6', '2408:8000::1', 60020)}`,
      want: { hint: '6', fromIp: '2408:8000::1' },
    },
    { name: 'IPv4-mapped from ip', errmsg: `x, ${tail('7', '::ffff:10.1.2.3', 60020)}`, want: { hint: '7', fromIp: '10.1.2.3' } },
    { name: 'no hint, no ip', errmsg: 'invalid code', want: {} },
    { name: 'garbage where the ip goes', errmsg: 'x, hint: [], from ip: ::::::::::, more', want: {} },
    { name: 'not a string', errmsg: 42, want: {} },
    { name: 'missing', errmsg: undefined, want: {} },
  ];
  for (const c of cases) t.same(parseErrmsg(c.errmsg), c.want, c.name);
});

t.test('normaliseIp: compares IPv4-mapped and upper-case IPv6 as the same address when normalised', async (t) => {
  t.equal(normaliseIp('::FFFF:127.0.0.2'), '127.0.0.2');
  t.equal(normaliseIp(' 2408:8000::ABCD '), '2408:8000::abcd');
});

const msg60020 = (ip: string) => `not allow to access from your ip, ${tail('1669020802500610298213653', ip, 60020)}`;
type Egress = IpDiagnosisInput['egress'];
interface Over {
  readonly errcode?: number;
  readonly errmsg?: unknown;
  readonly app?: IpDiagnosisInput['app'];
  readonly api?: string;
  /** The `from ip` in the default 60020 errmsg. */
  readonly ip?: string;
  /** Egress fields over the defaults; undefined removes one. */
  readonly egress?: { readonly [K in keyof Egress]?: Egress[K] | undefined };
}
const base = (over: Over): IpDiagnosisInput => {
  const egress = { name: 'wecom', viaProxy: false, localAddress: '10.0.0.5', expectedIp: '47.111.68.103', ...over.egress };
  return {
    errcode: over.errcode ?? 60020,
    errmsg: over.errmsg ?? msg60020(over.ip ?? '47.111.68.103'),
    app: over.app ?? { name: 'ecard', kind: 'self_built' },
    api: over.api ?? '/cgi-bin/message/send',
    egress: Object.fromEntries(Object.entries(egress).filter(([, v]) => v !== undefined)) as unknown as Egress,
  };
};

t.test('diagnoseIp: reads the expected IPv6 address as seen when WeCom writes it in another form (review F4)', async (t) => {
  for (const [seen, expected] of [
    ['0:0:0:0:0:0:0:1', '::1'],
    ['::1', '0:0:0:0:0:0:0:1'],
    ['2001:DB8:0:0::1', '2001:db8::1'],
    ['::ffff:7f00:2', '127.0.0.2'],
  ] as const) {
    const d = diagnoseIp(base({ ip: seen, egress: { expectedIp: expected, localAddress: undefined } }));
    t.equal(d?.cause, 'not_in_trusted_ip', `${seen} vs ${expected}`);
  }
  const other = diagnoseIp(base({ ip: '0:0:0:0:0:0:0:2', egress: { expectedIp: '::1', localAddress: undefined } }));
  t.equal(other?.cause, 'pin_not_effective', 'another IPv6 address is still a pin that is not effective');
});

t.test('diagnoseIp: classifies each refusal when the inputs differ', async (t) => {
  const cases: { name: string; input: IpDiagnosisInput; cause: string | undefined; en?: RegExp; zh?: RegExp }[] = [
    {
      name: 'the expected IP is refused',
      input: base({}),
      cause: 'not_in_trusted_ip',
      en: /^IP not in 企业可信IP: .*from 47\.111\.68\.103\. Add 47\.111\.68\.103 to 应用管理 › ecard › 企业可信IP/,
      zh: /请将 47\.111\.68\.103 加入 应用管理 › ecard › 企业可信IP/,
    },
    {
      name: 'WeCom saw another IP (NAT)',
      input: base({ ip: '120.27.208.144' }),
      cause: 'pin_not_effective',
      en: /^Egress pin not effective: WeCom saw 120\.27\.208\.144, expected 47\.111\.68\.103 \(egress "wecom" pinned to 10\.0\.0\.5\)/,
      zh: /出口绑定未生效：企业微信看到的来源 IP 是 120\.27\.208\.144，预期为 47\.111\.68\.103/,
    },
    {
      name: 'through a proxy, another IP',
      input: base({ ip: '120.27.208.144', egress: { viaProxy: true, localAddress: undefined } }),
      cause: 'pin_not_effective',
      en: /through its forward proxy/,
    },
    {
      name: 'left over IPv6 although the pin is IPv4',
      input: base({ ip: '2408:8000::1', egress: { family: 4 } }),
      cause: 'pin_not_effective',
      en: /left over IPv6 although the egress is IPv4: pin the address family/,
      zh: /请固定地址族/,
    },
    {
      name: 'IPv6 seen, no expected IP, IPv4 pin',
      input: base({ ip: '2408:8000::1', egress: { expectedIp: undefined, localAddress: '10.0.0.5' } }),
      cause: 'pin_not_effective',
      en: /expected an IPv4 address/,
    },
    {
      name: 'no expected IP configured',
      input: base({ egress: { expectedIp: undefined } }),
      cause: 'not_in_trusted_ip',
      en: /Set expected_ip in the egress profile/,
      zh: /请在出口配置中设置 expected_ip/,
    },
    {
      name: 'WeCom named no IP',
      input: base({ errmsg: 'not allow to access from your ip, hint: [1], from ip: , more info' }),
      cause: 'not_in_trusted_ip',
      en: /curl ifconfig\.me/,
    },
    {
      name: 'third-party app',
      input: base({ app: { name: 'vendor', kind: 'third_party' } }),
      cause: 'provider_ip_whitelist',
      en: /^IP not in the 服务商 IP白名单: WeCom refused third-party app "vendor".*服务商管理后台 › 服务商信息 › 基本信息 › IP白名单/,
      zh: /服务商管理后台 › 服务商信息 › 基本信息 › IP白名单/,
    },
    {
      name: '代开发 app',
      input: base({ app: { name: 'dk', kind: 'authorized' } }),
      cause: 'provider_ip_whitelist',
      en: /代开发 app "dk"/,
      zh: /代开发应用 "dk"/,
    },
    { name: 'suite token call', input: base({ app: { name: 'suite', kind: 'suite' } }), cause: 'provider_ip_whitelist' },
    {
      name: 'a pin problem wins over the kind of app',
      input: base({ ip: '1.1.1.1', app: { name: 'vendor', kind: 'third_party' } }),
      cause: 'pin_not_effective',
    },
    {
      name: '48009 contact assistant',
      input: base({ errcode: 48009, errmsg: `api forbidden for contact assistant, ${tail('1', '47.111.68.103', 48009)}` }),
      cause: 'not_in_trusted_ip',
      en: /通讯录同步助手/,
    },
    { name: 'decided on errcode: 60020 wording under another code', input: base({ errcode: 40014 }), cause: undefined },
    {
      name: 'decided on errcode: new wording of 60020',
      input: base({ errmsg: `ip blocked, ${tail('1', '47.111.68.103', 60020)}` }),
      cause: 'not_in_trusted_ip',
    },
  ];
  for (const c of cases) {
    const d = diagnoseIp(c.input);
    t.equal(d?.cause, c.cause, `${c.name}: cause`);
    if (c.en) t.match(d?.en, c.en, `${c.name}: en`);
    if (c.zh) t.match(d?.zh, c.zh, `${c.name}: zh`);
    if (d) t.ok(/[\u4e00-\u9fff]/.test(d.zh) && d.en.length > 40, `${c.name}: both languages`);
  }
  t.match(diagnoseIp(base({ ip: '120.27.208.144' })), {
    errcode: 60020,
    app: 'ecard',
    api: '/cgi-bin/message/send',
    egress: 'wecom',
    fromIp: '120.27.208.144',
    expectedIp: '47.111.68.103',
    localAddress: '10.0.0.5',
    hint: '1669020802500610298213653',
  });
});

t.test('credentialAdvice: names the console step and where the secret is set when WeCom rejects credentials', async (t) => {
  const cases: { errcode: number; kind: 'self_built' | 'authorized' | 'third_party' | 'suite'; en: RegExp; zh: RegExp }[] = [
    {
      errcode: 40001,
      kind: 'self_built',
      en: /from file \/etc\/wegate\/secrets\/ecard: copy it again from 应用管理 › ecard › Secret/,
      zh: /应用管理 › ecard › Secret/,
    },
    { errcode: 40001, kind: 'authorized', en: /重新获取secret/, zh: /永久授权码/ },
    { errcode: 40001, kind: 'suite', en: /服务商管理后台 › 应用管理/, zh: /服务商管理后台/ },
    { errcode: 40013, kind: 'self_built', en: /我的企业 › 企业信息 › 企业ID/, zh: /企业ID/ },
    { errcode: 40085, kind: 'suite', en: /指令回调URL/, zh: /刷新Ticket/ },
    { errcode: 40084, kind: 'third_party', en: /re-authorise/, zh: /重新授权/ },
  ];
  for (const c of cases) {
    const a = credentialAdvice(c.errcode, { name: 'ecard', kind: c.kind }, 'file /etc/wegate/secrets/ecard');
    t.match(a.en, c.en, `${c.errcode} ${c.kind} en`);
    t.match(a.zh, c.zh, `${c.errcode} ${c.kind} zh`);
  }
});
