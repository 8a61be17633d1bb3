/**
 * What a WeCom error means and what the admin should do, as pure functions (table-driven tests in
 * test/wecom/api/diagnose.test.ts).
 *
 * WeCom's errmsg ends in `hint: [...], from ip: X, more info at …?e=NNNNN` for 42001, 45009, 48002,
 * 48009, 50001, 60011, 60020 …; `from ip` may be empty and the hint format has changed over the years
 * (`1593488288_61_3281e2ff…` then `1706848717432011565347844`). WeCom says to decide on errcode, never
 * on errmsg ("errmsg可能会调整", doc 90455): the text is only mined for the IP and the hint.
 */
import { isIP } from 'node:net';
import { canonicalIp } from '../../core/addresses.ts';
import type { WecomAppKind } from './types.ts';

export interface ErrmsgDetails {
  /** WeCom's request id, for a support ticket. */
  readonly hint?: string;
  /** The address WeCom saw the call come from; undefined when the message names none. */
  readonly fromIp?: string;
}

const HINT_RE = /hint: \[([^\]]{0,128})\]/;
const FROM_IP_RE = /from ip: ([0-9A-Fa-f:.]{0,45})/;

/** Normalise an address for comparison: the one canonical form of src/core/addresses.ts (0:0:0:0:0:0:0:1 → ::1, ::ffff:1.2.3.4 → 1.2.3.4). */
export const normaliseIp = (ip: string): string => canonicalIp(ip);

/** `hint` and `from ip` out of any WeCom errmsg; tolerant of a missing/empty `from ip` or hint. */
export function parseErrmsg(errmsg: unknown): ErrmsgDetails {
  if (typeof errmsg !== 'string') return {};
  const hint = HINT_RE.exec(errmsg)?.[1];
  const ip = FROM_IP_RE.exec(errmsg)?.[1];
  const fromIp = ip !== undefined && isIP(normaliseIp(ip)) !== 0 ? normaliseIp(ip) : undefined;
  return { ...(hint ? { hint } : {}), ...(fromIp ? { fromIp } : {}) };
}

/** Errcodes where WeCom refused the caller's address: 60020 (企业可信IP / IP白名单), 48009 (通讯录同步助手 from a new IP). */
export const IP_ERRCODES: ReadonlySet<number> = new Set([60020, 48009]);

/**
 * Why WeCom refused the address:
 * - pin_not_effective: WeCom saw another address than the one the admin whitelisted (NAT, wrong route, proxy not used, IPv6);
 * - not_in_trusted_ip: the address is the expected one (or nothing to compare with) and is missing from the app's 企业可信IP;
 * - provider_ip_whitelist: a third-party / 代开发 app: the 服务商 IP白名单 is the list that counts.
 */
export type IpCause = 'pin_not_effective' | 'not_in_trusted_ip' | 'provider_ip_whitelist';

export interface IpDiagnosisInput {
  readonly errcode: number;
  readonly errmsg: unknown;
  /** The app's configured name and kind ('suite' for a suite-token call). */
  readonly app: { readonly name: string; readonly kind: WecomAppKind | 'suite' };
  /** API path, e.g. /cgi-bin/message/send. */
  readonly api: string;
  readonly egress: {
    readonly name: string;
    readonly localAddress?: string;
    readonly family?: 4 | 6;
    readonly expectedIp?: string;
    readonly viaProxy: boolean;
  };
}

export interface IpDiagnosis {
  readonly errcode: number;
  readonly cause: IpCause;
  readonly app: string;
  readonly api: string;
  readonly egress: string;
  /** What WeCom saw (may be unknown). */
  readonly fromIp?: string;
  /** What the admin whitelisted (egress expected_ip). */
  readonly expectedIp?: string;
  /** The local address wegate is pinned to, and its family. */
  readonly localAddress?: string;
  readonly family?: 4 | 6;
  readonly hint?: string;
  /** One sentence naming the console step, English and 简体中文. */
  readonly en: string;
  readonly zh: string;
}

const familyOf = (ip: string | undefined): 4 | 6 | undefined => {
  const f = ip === undefined ? 0 : isIP(ip);
  return f === 4 ? 4 : f === 6 ? 6 : undefined;
};

/** The diagnosis of an IP refusal, or undefined when `errcode` is not one (decided on errcode only). */
export function diagnoseIp(input: IpDiagnosisInput): IpDiagnosis | undefined {
  const { errcode, app, api, egress } = input;
  if (!IP_ERRCODES.has(errcode)) return undefined;
  const { hint, fromIp } = parseErrmsg(input.errmsg);
  const expectedIp = egress.expectedIp !== undefined ? normaliseIp(egress.expectedIp) : undefined;
  const seenFamily = familyOf(fromIp);
  const pinnedFamily = egress.family ?? familyOf(expectedIp) ?? familyOf(egress.localAddress);
  const familyMismatch = seenFamily !== undefined && pinnedFamily !== undefined && seenFamily !== pinnedFamily;
  const ipMismatch = fromIp !== undefined && expectedIp !== undefined && fromIp !== expectedIp;

  const base = {
    errcode,
    app: app.name,
    api,
    egress: egress.name,
    ...(fromIp !== undefined ? { fromIp } : {}),
    ...(expectedIp !== undefined ? { expectedIp } : {}),
    ...(egress.localAddress !== undefined ? { localAddress: egress.localAddress } : {}),
    ...(egress.family !== undefined ? { family: egress.family } : {}),
    ...(hint !== undefined ? { hint } : {}),
  };

  const seen = fromIp ?? '(an address WeCom did not name)';
  const seenZh = fromIp ?? '（企业微信未给出的地址）';
  if (ipMismatch || familyMismatch) {
    const how = egress.viaProxy
      ? { en: ' through its forward proxy', zh: '（经正向代理）' }
      : egress.localAddress !== undefined
        ? { en: ` pinned to ${egress.localAddress}`, zh: `（绑定本机地址 ${egress.localAddress}）` }
        : { en: '', zh: '' };
    const fam = familyMismatch
      ? {
          en: ` The call left over IPv${seenFamily} although the egress is IPv${pinnedFamily}: pin the address family.`,
          zh: ` 请求经 IPv${seenFamily} 发出，而出口为 IPv${pinnedFamily}：请固定地址族。`,
        }
      : { en: '', zh: '' };
    const exp = expectedIp ?? `an IPv${pinnedFamily} address`;
    const expZh = expectedIp ?? `IPv${pinnedFamily} 地址`;
    return {
      ...base,
      cause: 'pin_not_effective',
      en:
        `Egress pin not effective: WeCom saw ${seen}, expected ${exp} (egress "${egress.name}"${how.en}) when app "${app.name}" called ${api}. ` +
        `Traffic leaves through another address (NAT, a wrong route${egress.viaProxy ? '' : ', a proxy not used'}): fix the route so WeCom sees ${exp}, ` +
        `or, if ${seen} is the school's fixed public IP, add it to 应用管理 › ${app.name} › 企业可信IP and set expected_ip to it.${fam.en}`,
      zh:
        `出口绑定未生效：企业微信看到的来源 IP 是 ${seenZh}，预期为 ${expZh}（出口 "${egress.name}"${how.zh}），应用 "${app.name}" 调用 ${api} 被拒绝。` +
        `流量经其他地址发出（NAT、路由错误${egress.viaProxy ? '' : '或未经代理'}）：请修正路由，使企业微信看到 ${expZh}；` +
        `若 ${seenZh} 正是学校的固定公网 IP，请将其加入 应用管理 › ${app.name} › 企业可信IP，并把 expected_ip 设为该地址。${fam.zh}`,
    };
  }

  const noExpected =
    expectedIp === undefined
      ? {
          en: ' Set expected_ip in the egress profile so wegate can tell a missing whitelist entry from a pin that is not effective.',
          zh: ' 请在出口配置中设置 expected_ip，以便 wegate 区分“未加入白名单”与“出口绑定未生效”。',
        }
      : { en: '', zh: '' };
  const unnamed =
    fromIp === undefined
      ? { en: ' (find it with `curl ifconfig.me` on this host)', zh: '（可在本机运行 `curl ifconfig.me` 查看）' }
      : { en: '', zh: '' };

  if (app.kind === 'third_party' || app.kind === 'authorized' || app.kind === 'suite') {
    const what = app.kind === 'authorized' ? { en: '代开发 app', zh: '代开发应用' } : { en: 'third-party app', zh: '第三方应用' };
    return {
      ...base,
      cause: 'provider_ip_whitelist',
      en:
        `IP not in the 服务商 IP白名单: WeCom refused ${what.en} "${app.name}" calling ${api} from ${seen}. ` +
        `Add ${fromIp ?? "the egress's public IP"}${unnamed.en} to 服务商管理后台 › 服务商信息 › 基本信息 › IP白名单 ` +
        `(a self-built app's 企业可信IP does not cover it; it takes about a minute to apply).${noExpected.en}`,
      zh:
        `来源 IP 不在服务商 IP白名单中：${what.zh} "${app.name}" 从 ${seenZh} 调用 ${api} 被企业微信拒绝。` +
        `请将 ${fromIp ?? '出口公网 IP'}${unnamed.zh} 加入 服务商管理后台 › 服务商信息 › 基本信息 › IP白名单` +
        `（自建应用的企业可信IP对其无效；保存后约 1 分钟生效）。${noExpected.zh}`,
    };
  }

  if (errcode === 48009) {
    return {
      ...base,
      cause: 'not_in_trusted_ip',
      en:
        `IP not in 企业可信IP: WeCom refused the contact-sync assistant (通讯录同步助手) "${app.name}" reading contacts from the new address ${seen}. ` +
        `Add ${fromIp ?? "the egress's public IP"}${unnamed.en} to 安全与管理 › 管理工具 › 通讯录同步 › 企业可信IP.${noExpected.en}`,
      zh:
        `来源 IP 不在企业可信IP中：通讯录同步助手 "${app.name}" 从新地址 ${seenZh} 读取通讯录被拒绝。` +
        `请将 ${fromIp ?? '出口公网 IP'}${unnamed.zh} 加入 安全与管理 › 管理工具 › 通讯录同步 › 企业可信IP。${noExpected.zh}`,
    };
  }
  return {
    ...base,
    cause: 'not_in_trusted_ip',
    en:
      `IP not in 企业可信IP: WeCom refused app "${app.name}" calling ${api} from ${seen}. ` +
      `Add ${fromIp ?? "the egress's public IP"}${unnamed.en} to 应用管理 › ${app.name} › 企业可信IP (it takes about a minute to apply).${noExpected.en}`,
    zh:
      `来源 IP 不在企业可信IP中：应用 "${app.name}" 从 ${seenZh} 调用 ${api} 被企业微信拒绝。` +
      `请将 ${fromIp ?? '出口公网 IP'}${unnamed.zh} 加入 应用管理 › ${app.name} › 企业可信IP（保存后约 1 分钟生效）。${noExpected.zh}`,
  };
}

/** Errcodes of a token endpoint that mean the configured credentials are wrong: never retried in a loop. */
export const CREDENTIAL_ERRCODES: ReadonlySet<number> = new Set([40001, 40013, 40083, 40084, 40085, 40086, 41002, 41004]);

export interface CredentialAdvice {
  readonly en: string;
  readonly zh: string;
}

/**
 * The console step for a credential refusal. `where` says where the secret is configured
 * ("file /etc/wegate/secrets/ecard", "env WEGATE_ECARD_SECRET", "the state store"), never its value.
 */
export function credentialAdvice(errcode: number, app: { name: string; kind: WecomAppKind | 'suite' }, where: string): CredentialAdvice {
  switch (errcode) {
    case 40013:
    case 41002:
      return {
        en: `WeCom rejected the corp id of "${app.name}" (${errcode}): copy it from 我的企业 › 企业信息 › 企业ID into wecom.corp_id / the app's corp_id.`,
        zh: `企业微信拒绝了 "${app.name}" 的企业ID（${errcode}）：请从 我的企业 › 企业信息 › 企业ID 复制到 wecom.corp_id 或应用的 corp_id。`,
      };
    case 40083:
      return {
        en: `WeCom does not know the suite id of "${app.name}" (40083): copy it from 服务商管理后台 › 应用管理 › <应用> › SuiteID.`,
        zh: `企业微信不认识 "${app.name}" 的 SuiteID（40083）：请从 服务商管理后台 › 应用管理 › <应用> 复制 SuiteID。`,
      };
    case 40085:
      return {
        en: `WeCom rejected the stored suite_ticket of "${app.name}" (40085): check that the 指令回调URL / 回调URL reaches wegate; a new ticket is pushed every 10 minutes (刷新Ticket in the 服务商管理后台 pushes one at once).`,
        zh: `企业微信拒绝了 "${app.name}" 保存的 suite_ticket（40085）：请确认 指令回调URL / 回调URL 能到达 wegate；企业微信每 10 分钟推送一次新 ticket（可在服务商管理后台手动刷新Ticket）。`,
      };
    case 40084:
    case 40086:
      return {
        en: `WeCom rejected the permanent code or authorising corp of "${app.name}" (${errcode}) from ${where}: the authorisation may have been cancelled or reset (reset_permanent_code); re-authorise the app.`,
        zh: `企业微信拒绝了 "${app.name}" 的永久授权码或授权企业（${errcode}，来源：${where}）：授权可能已取消或重置（reset_permanent_code），请重新授权。`,
      };
    default:
      if (app.kind === 'authorized') {
        return {
          en: `WeCom rejected the secret (permanent code) of 代开发 app "${app.name}" (${errcode}) from ${where}: it changes when the school presses 重新获取secret; store the new one.`,
          zh: `企业微信拒绝了代开发应用 "${app.name}" 的 secret（永久授权码，${errcode}，来源：${where}）：企业点击“重新获取secret”后会变化，请保存新的值。`,
        };
      }
      if (app.kind === 'suite') {
        return {
          en: `WeCom rejected the suite secret of "${app.name}" (${errcode}) from ${where}: copy it from 服务商管理后台 › 应用管理 › <应用> › Secret.`,
          zh: `企业微信拒绝了 "${app.name}" 的 Secret（${errcode}，来源：${where}）：请从 服务商管理后台 › 应用管理 › <应用> 复制 Secret。`,
        };
      }
      return {
        en: `WeCom rejected the secret of app "${app.name}" (${errcode}) from ${where}: copy it again from 应用管理 › ${app.name} › Secret (查看).`,
        zh: `企业微信拒绝了应用 "${app.name}" 的 Secret（${errcode}，来源：${where}）：请到 应用管理 › ${app.name} › Secret（查看）重新复制。`,
      };
  }
}
