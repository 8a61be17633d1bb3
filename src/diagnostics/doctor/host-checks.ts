/**
 * Doctor checks of this host: the listeners can bind (a running wegate holding a port is named as
 * such), the certificates are valid (days to expiry, key, chain, hosts), the verification files are
 * there for the hosts that serve them.
 */
import { X509Certificate } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { parseListenAddress } from '../../core/addresses.ts';
import { checkCertificateFiles } from '../../server/tls-check.ts';
import { certificateNames } from '../../server/tls.ts';
import { undici } from '../../egress/undici.ts';
import { type CheckResult, type DoctorCheck, type DoctorContext, result } from './types.ts';

const DAY_MS = 86_400_000;

/** Bind and release host:port; resolves undefined when that worked, else the errno code. */
function tryBind(host: string | undefined, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.listen({ ...(host !== undefined ? { host } : {}), port, exclusive: true }, () => s.close(() => resolve(undefined)));
  });
}

/** The /diagnostics of a wegate on the configured admin address, if one answers there (1 s at most). */
async function runningWegate(ctx: DoctorContext): Promise<{ pid: number | null; ports: number[] } | undefined> {
  const j = (await runningDiagnostics(ctx)) as { wegate?: { pid?: unknown; listen?: unknown } } | undefined;
  if (j === undefined) return undefined;
  const listen = typeof j.wegate?.listen === 'object' && j.wegate.listen !== null ? Object.values(j.wegate.listen) : [];
  return {
    pid: typeof j.wegate?.pid === 'number' ? j.wegate.pid : null,
    ports: listen.filter((p): p is number => typeof p === 'number'),
  };
}

/** The /diagnostics JSON of a running wegate on the configured admin address, if one answers there (1 s at most). */
export async function runningDiagnostics(ctx: DoctorContext): Promise<Record<string, unknown> | undefined> {
  const parsed = parseListenAddress(ctx.config.admin.listen);
  if (!parsed.ok || parsed.value.port === 0) return undefined;
  const h = parsed.value.wildcard || parsed.value.host === undefined ? '127.0.0.1' : parsed.value.host;
  const { Agent, request } = undici();
  const agent = new Agent({ connect: { timeout: 1000 } });
  try {
    const res = await request.call(agent, {
      origin: `http://${h.includes(':') ? `[${h}]` : h}:${parsed.value.port}`,
      path: '/diagnostics?format=json',
      method: 'GET',
      headers: { accept: 'application/json' },
      headersTimeout: 1000,
      bodyTimeout: 1000,
    });
    const j = (await res.body.json()) as Record<string, unknown> | null;
    return typeof j === 'object' && j !== null && j['service'] === 'wegate' ? j : undefined;
  } catch {
    return undefined;
  } finally {
    agent.destroy().catch(() => undefined);
  }
}

export const listenersCheck: DoctorCheck = {
  name: 'listeners',
  async run(ctx) {
    const c = ctx.config;
    const wanted: [string, string | undefined][] = [
      ['listen.http', c.listen.http],
      ['listen.https', c.listen.https],
      ['admin.listen', c.admin.listen],
    ];
    let running: Promise<Awaited<ReturnType<typeof runningWegate>>> | undefined;
    return Promise.all(
      wanted.flatMap(([key, address]): Promise<CheckResult>[] => {
        if (address === undefined) return [];
        return [
          (async () => {
            const subject = `${key} ${address}`;
            const parsed = parseListenAddress(address);
            if (!parsed.ok)
              return result('listeners', subject, 'fail', {
                en: `not a listen address: it ${parsed.reason}`,
                zh: `监听地址格式错误：${parsed.reason}`,
              });
            const { host, port } = parsed.value;
            const code = await tryBind(host, port);
            if (code === undefined) {
              return result('listeners', subject, 'ok', {
                en: port === 0 ? 'can bind (an ephemeral port)' : 'can bind (bound and released)',
                zh: port === 0 ? '可以监听（临时端口）' : '可以监听（已绑定并释放）',
              });
            }
            if (code === 'EADDRINUSE') {
              running ??= runningWegate(ctx);
              const w = await running;
              // Only the ports that wegate says it listens on are its own.
              if (w?.ports.includes(port)) {
                const pid = w.pid !== null ? `pid ${w.pid}` : 'pid unknown';
                return result(
                  'listeners',
                  subject,
                  'warn',
                  {
                    en: `in use by a running wegate (${pid}, its admin listener answers at ${c.admin.listen}): expected while it runs`,
                    zh: `端口正被运行中的 wegate 使用（${pid.replace('pid unknown', 'pid 未知')}，管理端口 ${c.admin.listen} 有应答）：运行期间属正常`,
                  },
                  {
                    en: 'stop it (systemctl stop wegate) before starting another wegate on this address; doctor checks everything else meanwhile',
                    zh: '如需在此地址启动另一个 wegate，请先停止它（systemctl stop wegate）；其余检查照常进行',
                  },
                );
              }
              return result(
                'listeners',
                subject,
                'fail',
                { en: 'address in use by another process (EADDRINUSE)', zh: '地址已被其他进程占用（EADDRINUSE）' },
                {
                  en: `find it with \`ss -ltnp 'sport = :${port}'\`, stop it, or choose another ${key}`,
                  zh: `用 \`ss -ltnp 'sport = :${port}'\` 找到该进程并停止，或改用其他 ${key}`,
                },
              );
            }
            if (code === 'EACCES') {
              return result(
                'listeners',
                subject,
                'fail',
                {
                  en: `permission denied (EACCES)${port < 1024 ? ': ports below 1024 are privileged' : ''}`,
                  zh: `没有权限（EACCES）${port < 1024 ? '：1024 以下端口需要特权' : ''}`,
                },
                {
                  en: 'run wegate with CAP_NET_BIND_SERVICE (the systemd unit sets AmbientCapabilities=CAP_NET_BIND_SERVICE) or as root',
                  zh: '为 wegate 授予 CAP_NET_BIND_SERVICE（systemd 单元已设置 AmbientCapabilities=CAP_NET_BIND_SERVICE）或以 root 运行',
                },
              );
            }
            if (code === 'EADDRNOTAVAIL') {
              return result(
                'listeners',
                subject,
                'fail',
                {
                  en: `${host ?? address} is not an address of this host (EADDRNOTAVAIL)`,
                  zh: `${host ?? address} 不是本机地址（EADDRNOTAVAIL）`,
                },
                { en: `add it to a network interface or correct ${key}`, zh: `请把该地址配置到网卡上，或改正 ${key}` },
              );
            }
            return result('listeners', subject, 'fail', { en: `cannot bind: ${code}`, zh: `无法监听：${code}` });
          })(),
        ];
      }),
    );
  },
};

export const certificatesCheck: DoctorCheck = {
  name: 'certificates',
  async run(ctx) {
    const certs = ctx.config.tls?.certs ?? [];
    if (certs.length === 0)
      return [result('certificates', 'tls', 'skip', { en: 'no tls section (no HTTPS listener)', zh: '未配置 tls（无 HTTPS 监听）' })];
    const hosts = [...new Set(ctx.config.routes.flatMap((r) => (r.host === undefined ? [] : [r.host])))];
    const out: CheckResult[] = [];
    for (const [i, c] of certs.entries()) {
      const subject = `tls.certs[${i}] ${c.cert}`;
      // The config load has checked that the key fits; what is left is what time does to a certificate.
      let pem: Buffer;
      let x509: X509Certificate;
      try {
        pem = await readFile(c.cert);
        x509 = new X509Certificate(pem);
      } catch (e) {
        out.push(
          result('certificates', subject, 'fail', {
            en: `cannot be read or parsed: ${(e as Error).message}`,
            zh: `无法读取或解析：${(e as Error).message}`,
          }),
        );
        continue;
      }
      const names = certificateNames(x509).join(', ');
      const until = new Date(x509.validTo);
      const days = Math.floor((until.getTime() - ctx.now()) / DAY_MS);
      const date = until.toISOString().slice(0, 10);
      if (new Date(x509.validFrom).getTime() > ctx.now()) {
        out.push(
          result('certificates', subject, 'fail', {
            en: `${names}: not valid before ${x509.validFrom} (check the clock)`,
            zh: `${names}：在 ${x509.validFrom} 之前无效（请检查系统时间）`,
          }),
        );
      } else if (days < 0) {
        out.push(
          result(
            'certificates',
            subject,
            'fail',
            { en: `${names}: expired on ${date}`, zh: `${names}：已于 ${date} 过期` },
            {
              en: 'renew it (certbot renew) and reload wegate (systemctl reload wegate)',
              zh: '请续期（certbot renew）并重新加载 wegate（systemctl reload wegate）',
            },
          ),
        );
      } else {
        out.push(
          result('certificates', subject, 'ok', {
            en: `${names}: valid until ${date} (${days} days left)`,
            zh: `${names}：有效期至 ${date}（剩余 ${days} 天）`,
          }),
        );
      }
      // The `wegate check` warnings (expiring soon, no route host covered, missing intermediate), already bilingual.
      for (const w of checkCertificateFiles([{ at: `tls.certs[${i}].cert`, file: c.cert, pem }], {
        hosts,
        now: ctx.now(),
        roots: ctx.roots,
      })) {
        if (days >= 0) out.push(result('certificates', subject, 'warn', { en: w, zh: w }));
      }
    }
    return out;
  },
};

const WW_VERIFY = /^WW_verify_[A-Za-z0-9]{16}\.txt$/;

export const verifyFilesCheck: DoctorCheck = {
  name: 'verify_files',
  async run(ctx) {
    const vf = ctx.config.verify_files;
    const wecom = ctx.config.wecom !== undefined;
    const hosts = vf?.hosts.length ? vf.hosts : [...new Set(ctx.config.routes.flatMap((r) => (r.host === undefined ? [] : [r.host])))];
    const where = hosts.length > 0 ? hosts.join(', ') : 'every host';
    const whereZh = hosts.length > 0 ? hosts.join('、') : '所有域名';
    const download = {
      en: 'download WW_verify_….txt in the WeCom admin console (应用管理 › <app> › 网页授权及JS-SDK / 可信域名 › 申请校验域名) and put it in',
      zh: '请在企业微信管理后台（应用管理 › <应用> › 网页授权及JS-SDK / 可信域名 › 申请校验域名）下载 WW_verify_….txt 并放入',
    };
    if (!vf) {
      if (!wecom)
        return [
          result('verify_files', 'verify_files', 'skip', {
            en: 'no verify_files section (and no wecom section)',
            zh: '未配置 verify_files（也未配置 wecom）',
          }),
        ];
      return [
        result(
          'verify_files',
          'verify_files',
          'warn',
          {
            en: 'no verify_files section: WeCom cannot verify the 可信域名 of these hosts',
            zh: '未配置 verify_files：企业微信无法校验这些域名的可信域名归属',
          },
          { en: `${download.en} a directory set as verify_files.dir`, zh: `${download.zh} verify_files.dir 指定的目录` },
        ),
      ];
    }
    let names: string[];
    try {
      names = await readdir(vf.dir);
    } catch (e) {
      return [
        result('verify_files', vf.dir, 'fail', {
          en: `cannot read the directory: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
          zh: `无法读取目录：${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        }),
      ];
    }
    const out: CheckResult[] = [];
    const ww = names.filter((n) => WW_VERIFY.test(n)).sort();
    if (ww.length === 0) {
      out.push(
        result(
          'verify_files',
          vf.dir,
          'warn',
          {
            en: `no WW_verify_*.txt in ${vf.dir}: WeCom's 可信域名 check of ${where} will get 404`,
            zh: `${vf.dir} 中没有 WW_verify_*.txt：企业微信校验 ${whereZh} 的可信域名时会得到 404`,
          },
          { en: `${download.en} ${vf.dir}`, zh: `${download.zh} ${vf.dir}` },
        ),
      );
    } else {
      out.push(
        result('verify_files', vf.dir, 'ok', {
          en: `${ww.join(', ')} served at the root of ${where}`,
          zh: `${ww.join('、')} 在 ${whereZh} 的根目录提供`,
        }),
      );
    }
    for (const n of vf.names) {
      if (!names.includes(n)) {
        out.push(
          result(
            'verify_files',
            `verify_files.names ${n}`,
            'fail',
            { en: `${n} is configured but not in ${vf.dir}`, zh: `已配置 ${n}，但 ${vf.dir} 中没有该文件` },
            {
              en: `put the file in ${vf.dir} or remove it from verify_files.names`,
              zh: `请把文件放入 ${vf.dir}，或从 verify_files.names 中删除`,
            },
          ),
        );
      }
    }
    return out;
  },
};
