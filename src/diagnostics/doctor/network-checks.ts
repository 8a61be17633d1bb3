/**
 * Doctor checks that leave the host: each egress profile's address exists and its proxy answers,
 * the public IP matches expected_ip (IP echo), each upstream resolves and answers (TLS verified,
 * through the route's egress).
 */
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { connect, isIP } from 'node:net';
import type { Dispatcher } from 'undici';
import type { RouteConfig } from '../../config/schema.ts';
import { explainEgressError, probeLocalAddress } from '../../egress/index.ts';
import { undici } from '../../egress/undici.ts';
import { type CheckResult, type DoctorCheck, result } from './types.ts';

/** Longest a single network probe may take. */
const PROBE_MS = 5_000;

/** TCP connect to host:port (from localAddress); resolves undefined when connected, else the error code. */
function tcpConnect(host: string, port: number, localAddress: string | undefined): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect({ host, port, ...(localAddress !== undefined ? { localAddress } : {}), timeout: PROBE_MS });
    s.once('connect', () => {
      s.destroy();
      resolve(undefined);
    });
    s.once('timeout', () => {
      s.destroy();
      resolve('ETIMEDOUT');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

export const egressCheck: DoctorCheck = {
  name: 'egress',
  async run(ctx) {
    const profiles = Object.entries(ctx.config.egress ?? {});
    if (profiles.length === 0)
      return [
        result('egress', 'egress', 'skip', {
          en: 'no egress profile: traffic leaves by the system route',
          zh: '未配置出口：流量按系统路由发出',
        }),
      ];
    const unusable = await ctx.unusableProfiles();
    return Promise.all(
      profiles.map(async ([name, p]): Promise<CheckResult> => {
        const subject = `egress ${name}`;
        const why = unusable.get(name);
        if (why !== undefined) return result('egress', subject, 'fail', { en: why, zh: why });
        const parts: string[] = [];
        const partsZh: string[] = [];
        if (p.local_address !== undefined) {
          // Bound once more here: the config may have been loaded a while ago.
          const code = await probeLocalAddress(p.local_address);
          if (code !== undefined)
            return result('egress', subject, 'fail', {
              en: `local_address ${p.local_address} cannot be bound: ${code}`,
              zh: `无法绑定本机地址 ${p.local_address}：${code}`,
            });
          parts.push(`local address ${p.local_address} is on this host`);
          partsZh.push(`本机地址 ${p.local_address} 可用`);
        }
        if (p.proxy !== undefined) {
          const u = new URL(p.proxy.url);
          const host = u.hostname.replace(/^\[|\]$/g, '');
          const code = await tcpConnect(host, Number(u.port), p.local_address);
          if (code !== undefined) {
            return result(
              'egress',
              subject,
              'fail',
              { en: `the forward proxy ${u.host} does not answer: ${code}`, zh: `正向代理 ${u.host} 无应答：${code}` },
              {
                en: 'start the proxy or correct egress.' + name + '.proxy.url (and allow this host in its ACL)',
                zh: `请启动代理或改正 egress.${name}.proxy.url（并在代理的访问控制中允许本机）`,
              },
            );
          }
          parts.push(`the forward proxy ${u.host} accepts connections`);
          partsZh.push(`正向代理 ${u.host} 可连接`);
        }
        if (parts.length === 0) return result('egress', subject, 'ok', { en: 'no pin: the system route', zh: '未固定：按系统路由' });
        return result('egress', subject, 'ok', { en: parts.join('; '), zh: partsZh.join('；') });
      }),
    );
  },
};

export const publicIpCheck: DoctorCheck = {
  name: 'public_ip',
  async run(ctx) {
    const profiles = Object.entries(ctx.config.egress ?? {});
    if (profiles.length === 0) return [];
    const unusable = await ctx.unusableProfiles();
    const egress = await ctx.egress();
    return Promise.all(
      profiles.map(async ([name, cfg]): Promise<CheckResult> => {
        const subject = `egress ${name}`;
        const profile = egress.profile(name);
        if (unusable.has(name) || !profile)
          return result('public_ip', subject, 'skip', { en: 'profile unusable (see egress above)', zh: '出口不可用（见上方 egress）' });
        if (cfg.ip_echo === undefined) {
          return result(
            'public_ip',
            subject,
            'skip',
            cfg.expected_ip !== undefined
              ? {
                  en: `no ip_echo: expected_ip ${cfg.expected_ip} is compared with WeCom's answers only`,
                  zh: `未配置 ip_echo：expected_ip ${cfg.expected_ip} 只与企业微信的应答比较`,
                }
              : { en: 'no ip_echo and no expected_ip', zh: '未配置 ip_echo 与 expected_ip' },
          );
        }
        const st = await profile.checkNow();
        if (st.error !== undefined) return result('public_ip', subject, 'fail', { en: st.error, zh: `出口 IP 检测失败：${st.error}` });
        if (st.matches === true)
          return result('public_ip', subject, 'ok', {
            en: `public IP ${st.observedIp} matches expected_ip`,
            zh: `出口公网 IP ${st.observedIp} 与 expected_ip 一致`,
          });
        if (st.matches === false) {
          return result(
            'public_ip',
            subject,
            'fail',
            {
              en: `public IP is ${st.observedIp}, but expected_ip is ${cfg.expected_ip}: WeCom will answer 60020`,
              zh: `出口公网 IP 为 ${st.observedIp}，而 expected_ip 为 ${cfg.expected_ip}：企业微信将返回 60020`,
            },
            {
              en: `fix the route so traffic leaves from ${cfg.expected_ip}, or, if ${st.observedIp} is the school's fixed IP, add it to 应用管理 › <app> › 企业可信IP and set expected_ip to it`,
              zh: `请修正路由使流量从 ${cfg.expected_ip} 发出；若 ${st.observedIp} 正是学校的固定 IP，请将其加入 应用管理 › <应用> › 企业可信IP 并把 expected_ip 设为该地址`,
            },
          );
        }
        return result(
          'public_ip',
          subject,
          'warn',
          {
            en: `public IP is ${st.observedIp} (no expected_ip to compare with)`,
            zh: `出口公网 IP 为 ${st.observedIp}（未设置 expected_ip）`,
          },
          {
            en: `set egress.${name}.expected_ip to the IP entered as 企业可信IP`,
            zh: `请把 egress.${name}.expected_ip 设为填写在企业可信IP中的地址`,
          },
        );
      }),
    );
  },
};

const TLS_CODE = /CERT|SELF_SIGNED|UNABLE_TO|DEPTH_ZERO|ERR_TLS|ERR_SSL|HOSTNAME|ALTNAME/;

const routeLabel = (r: RouteConfig, i: number) => `routes[${i}]${r.name !== undefined ? ` (${r.name})` : ''}`;

export const upstreamsCheck: DoctorCheck = {
  name: 'upstreams',
  async run(ctx) {
    const unusable = await ctx.unusableProfiles();
    // One probe per distinct upstream as it is reached (URL, egress, TLS settings).
    const groups = new Map<string, { route: RouteConfig; labels: string[] }>();
    ctx.config.routes.forEach((r, i) => {
      const key = JSON.stringify([r.upstream, r.egress ?? null, r.tls]);
      const g = groups.get(key);
      if (g) g.labels.push(routeLabel(r, i));
      else groups.set(key, { route: r, labels: [routeLabel(r, i)] });
    });
    return Promise.all(
      [...groups.values()].map(async ({ route: r, labels }): Promise<CheckResult> => {
        const url = new URL(r.upstream);
        const subject = `${labels.join(', ')} → ${url.origin}`;
        /** The config path of the first route ("routes[0]"), for the fixes. */
        const at = (labels[0] ?? '').replace(/ \(.*\)$/, '');
        const via = r.egress !== undefined ? { en: ` through egress ${r.egress}`, zh: `（经出口 ${r.egress}）` } : { en: '', zh: '' };
        if (r.egress !== undefined && unusable.has(r.egress)) {
          return result('upstreams', subject, 'skip', {
            en: `egress ${r.egress} is unusable (see egress above)`,
            zh: `出口 ${r.egress} 不可用（见上方 egress）`,
          });
        }
        const host = url.hostname.replace(/^\[|\]$/g, '');
        const viaProxy = r.egress !== undefined && ctx.config.egress?.[r.egress]?.proxy !== undefined;
        // Through a forward proxy the proxy resolves the name; otherwise it must resolve here.
        if (isIP(host) === 0 && !viaProxy) {
          try {
            await lookup(host, { all: true });
          } catch (e) {
            const code = (e as NodeJS.ErrnoException).code ?? 'error';
            return result(
              'upstreams',
              subject,
              'fail',
              { en: `${host} does not resolve (${code})`, zh: `${host} 无法解析（${code}）` },
              {
                en: `check the name in ${at}.upstream and this host's DNS (/etc/resolv.conf)`,
                zh: `请检查 ${at}.upstream 中的域名和本机 DNS（/etc/resolv.conf）`,
              },
            );
          }
        }
        const tls = {
          ...(r.tls.ca_file !== undefined ? { ca: readFileSync(r.tls.ca_file) } : {}),
          ...(r.tls.server_name !== undefined ? { servername: r.tls.server_name } : {}),
          ...(r.tls.insecure_skip_verify ? { rejectUnauthorized: false } : {}),
        };
        const connectMs = Math.min(r.timeouts.connect_ms, PROBE_MS);
        const { Agent, request } = undici();
        let dispatcher: Dispatcher;
        if (r.egress !== undefined) {
          const profile = (await ctx.egress()).profile(r.egress);
          if (!profile)
            return result('upstreams', subject, 'skip', { en: `egress ${r.egress} is unusable`, zh: `出口 ${r.egress} 不可用` });
          dispatcher = profile.createDispatcher({ ...tls, connectTimeoutMs: connectMs });
        } else {
          dispatcher = new Agent({ connect: { timeout: connectMs, ...tls } });
        }
        const started = performance.now();
        try {
          const res = await request.call(dispatcher, {
            origin: url.origin,
            path: `${url.pathname}${url.search}`,
            method: 'GET',
            headers: { 'user-agent': 'wegate-doctor' },
            headersTimeout: PROBE_MS,
            bodyTimeout: PROBE_MS,
          });
          // Any status counts as an answer: the body is not read (destroying it aborts, hence the listener).
          res.body.on('error', () => undefined).destroy();
          const ms = Math.round(performance.now() - started);
          const verified = url.protocol === 'https:' ? (r.tls.insecure_skip_verify ? 'TLS NOT verified' : 'TLS verified') : 'plain HTTP';
          const verifiedZh = url.protocol === 'https:' ? (r.tls.insecure_skip_verify ? '未校验 TLS 证书' : 'TLS 证书已校验') : '明文 HTTP';
          const found = {
            en: `answered HTTP ${res.statusCode} in ${ms} ms${via.en} (${verified})`,
            zh: `${ms} 毫秒内应答 HTTP ${res.statusCode}${via.zh}（${verifiedZh}）`,
          };
          if (url.protocol === 'https:' && r.tls.insecure_skip_verify) {
            return result('upstreams', subject, 'warn', found, {
              en: `remove tls.insecure_skip_verify from ${at}; give tls.ca_file instead`,
              zh: `请去掉 ${at} 的 tls.insecure_skip_verify，改为配置 tls.ca_file`,
            });
          }
          return result('upstreams', subject, 'ok', found);
        } catch (e) {
          // A proxy's refusal of the tunnel has no code, only undici's message: explainEgressError says what it means.
          const code = String((e as { code?: unknown }).code ?? explainEgressError(e));
          if (code === 'ECONNREFUSED') {
            return result(
              'upstreams',
              subject,
              'fail',
              { en: `connection refused (ECONNREFUSED)${via.en}`, zh: `连接被拒绝（ECONNREFUSED）${via.zh}` },
              {
                en: `is the service running on ${url.host}? check ${at}.upstream and the firewall`,
                zh: `请确认 ${url.host} 上的服务已启动，并检查 ${at}.upstream 与防火墙`,
              },
            );
          }
          if (TLS_CODE.test(code)) {
            return result(
              'upstreams',
              subject,
              'fail',
              { en: `TLS certificate not accepted (${code})${via.en}`, zh: `TLS 证书校验失败（${code}）${via.zh}` },
              {
                en: `give the upstream's CA in ${at}.tls.ca_file, or the name it is issued to in tls.server_name`,
                zh: `请在 ${at}.tls.ca_file 中配置后端的 CA，或在 tls.server_name 中填写证书上的域名`,
              },
            );
          }
          if (/TIMEOUT/.test(code)) {
            return result('upstreams', subject, 'fail', {
              en: `no answer within ${PROBE_MS} ms (${code})${via.en}`,
              zh: `${PROBE_MS} 毫秒内无应答（${code}）${via.zh}`,
            });
          }
          return result('upstreams', subject, 'fail', { en: `cannot be reached: ${code}${via.en}`, zh: `无法连接：${code}${via.zh}` });
        } finally {
          dispatcher.destroy().catch(() => undefined);
        }
      }),
    );
  },
};
