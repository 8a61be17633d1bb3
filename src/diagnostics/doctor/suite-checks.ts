/**
 * Doctor check of the third-party suites and 代开发 templates: each has a suite_ticket stored and
 * younger than 30 minutes. WeCom pushes one every 10 minutes to the suite's 指令回调URL / template
 * 回调URL and a ticket is valid for 30 ("suite_ticket实际有效期为30分钟", document/path/97162): with
 * none, no suite_access_token, no permanent-code exchange, no third-party corp token.
 *
 * The age comes from the running wegate's /diagnostics when one answers on admin.listen (it holds
 * the store file exclusively), else from the store file itself, opened read-only.
 */
import type { WecomSuiteConfig } from '../../config/schema.ts';
import { inspectSuiteTickets } from '../../store/index.ts';
import { runningDiagnostics } from './host-checks.ts';
import { type CheckResult, type DoctorCheck, type DoctorContext, result } from './types.ts';

const CHECK = 'wecom_suite_ticket';
/** WeCom's validity of one ticket. */
const VALID_MS = 30 * 60_000;
/** Older than this, at least one 10-minute push was missed. */
const LATE_MS = 15 * 60_000;

type Source = { readonly from: string; readonly times: ReadonlyMap<string, number> } | { readonly error: string };

async function ticketTimes(ctx: DoctorContext): Promise<Source> {
  const running = await runningDiagnostics(ctx);
  const provider = running?.['provider'] as { suites?: { suiteId?: unknown; suiteTicketReceivedAt?: unknown }[] } | null | undefined;
  if (provider?.suites) {
    const times = new Map<string, number>();
    for (const s of provider.suites) {
      if (typeof s.suiteId === 'string' && typeof s.suiteTicketReceivedAt === 'string')
        times.set(s.suiteId, Date.parse(s.suiteTicketReceivedAt));
    }
    return { from: `the running wegate (${ctx.config.admin.listen})`, times };
  }
  const state = ctx.config.state;
  if (state === undefined) return { error: 'state.dir is not set: wegate keeps the suite_ticket in the state store' };
  try {
    return { from: `the state store in ${state.dir}`, times: (await inspectSuiteTickets(state)) ?? new Map() };
  } catch (e) {
    return { error: `the state store in ${state.dir} cannot be read (${(e as Error).message})` };
  }
}

/** Where WeCom's console takes the URL the ticket is pushed to. */
function fix(ctx: DoctorContext, s: WecomSuiteConfig): { en: string; zh: string } {
  const cb = ctx.config.wecom?.callbacks.find((c) => c.kind === 'suite' && c.suite === s.name);
  const url = cb ? `https://<your domain>${cb.path}` : 'a wecom.callbacks entry of kind suite for this suite (none is configured)';
  const where =
    s.kind === 'template'
      ? {
          en: '服务商管理后台 › 应用管理 › 代开发应用模板 › <模板> › 回调URL',
          zh: '服务商管理后台 › 应用管理 › 代开发应用模板 › <模板> › 回调URL',
        }
      : {
          en: '服务商管理后台 › 应用管理 › <应用> › 回调配置 › 指令回调URL',
          zh: '服务商管理后台 › 应用管理 › <应用> › 回调配置 › 指令回调URL',
        };
  return {
    en: `set ${where.en} to ${url} (wegate must answer it: wegate doctor above, the 指令回调 URL check), then press 刷新Ticket there for a push at once`,
    zh: `将 ${where.zh} 设为 ${url}（须由 wegate 应答），然后在该页点击「刷新Ticket」立即推送`,
  };
}

export const suiteTicketCheck: DoctorCheck = {
  name: CHECK,
  async run(ctx) {
    const suites = ctx.config.wecom?.suites ?? [];
    if (suites.length === 0) return [result(CHECK, 'wecom', 'skip', { en: 'no suite in wecom.suites', zh: 'wecom.suites 中没有应用套件' })];
    const src = await ticketTimes(ctx);
    return suites.map((s): CheckResult => {
      const subject = `suite ${s.name} (${s.suite_id})`;
      if ('error' in src) return result(CHECK, subject, 'fail', { en: src.error, zh: `无法确认 suite_ticket：${src.error}` });
      const at = src.times.get(s.suite_id);
      if (at === undefined || Number.isNaN(at)) {
        return result(
          CHECK,
          subject,
          'fail',
          { en: `no suite_ticket received yet (per ${src.from})`, zh: `尚未收到 suite_ticket（来自${src.from}）` },
          fix(ctx, s),
        );
      }
      const ageS = Math.max(0, Math.round((ctx.now() - at) / 1000));
      const age = {
        en: `suite_ticket received ${ageS} s ago (per ${src.from})`,
        zh: `suite_ticket 于 ${ageS} 秒前收到（来自${src.from}）`,
      };
      if (ctx.now() - at > VALID_MS)
        return result(
          CHECK,
          subject,
          'fail',
          { en: `${age.en}: older than 30 minutes, so no longer valid`, zh: `${age.zh}：已超过 30 分钟，已失效` },
          fix(ctx, s),
        );
      if (ctx.now() - at > LATE_MS)
        return result(
          CHECK,
          subject,
          'warn',
          {
            en: `${age.en}: WeCom pushes one every 10 minutes, so at least one push was missed`,
            zh: `${age.zh}：企业微信每 10 分钟推送一次，至少错过了一次推送`,
          },
          fix(ctx, s),
        );
      return result(CHECK, subject, 'ok', age);
    });
  },
};
