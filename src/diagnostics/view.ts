/**
 * What /diagnostics shows (src/server/admin.ts serves it on the admin listener only): recent
 * incidents with the action sentence, egress status per profile, token status per WeCom app and the
 * readiness probe. Every field is picked by name, never spread from its source, so a secret added
 * to a source object later cannot slip in: no token, secret, proxy credential or query is in here.
 * JSON for machines; a bilingual HTML page for a browser, every value HTML-escaped.
 */
import type { Incidents } from './incidents.ts';
import type { ProbeResult, Readiness } from './readiness.ts';

/** An egress profile as src/egress/ snapshot() gives it. */
export interface EgressView {
  readonly name: string;
  readonly localAddress: string | undefined;
  readonly family: 4 | 6 | undefined;
  readonly proxy: string | undefined;
  readonly expectedIp: string | undefined;
  readonly ipEcho: boolean;
  readonly observedIp: string | undefined;
  readonly matches: boolean | undefined;
  readonly checkedAt: number | undefined;
  readonly error: string | undefined;
}

/** A token row as the WeCom client's tokenStatus() gives it. */
export interface TokenView {
  readonly name: string;
  readonly kind: string;
  readonly lastRefreshAt?: number;
  readonly expiresAt?: number;
  readonly lastErrcode?: number;
  readonly lastError?: string;
  readonly heldUntil?: number;
}

/** What the provider events keep (picked by name below). */
export interface ProviderSource {
  readonly suites: readonly {
    readonly name: string;
    readonly suiteId: string;
    readonly kind: string;
    readonly ticketReceivedAt: number | undefined;
    readonly ticketTimestamp: number | undefined;
  }[];
  readonly corps: readonly {
    readonly suiteId: string;
    readonly corpId: string;
    readonly corpName: string | undefined;
    readonly status: string;
    readonly createdAt: number;
    readonly updatedAt: number;
    readonly cancelledAt: number | undefined;
  }[];
  readonly authCodes: readonly {
    readonly id: number;
    readonly suiteId: string;
    readonly infoType: string;
    readonly state: string;
    readonly attempts: number;
    readonly receivedAt: number;
    readonly nextAttemptAt: number;
    readonly lastError: string | undefined;
    readonly corpId: string | undefined;
  }[];
}

export interface DiagnosticsSources {
  readonly clock: () => number;
  readonly incidents: Incidents;
  readonly egress: () => readonly EgressView[];
  /** Undefined without a `wecom:` section. */
  readonly wecom?: { readonly egress: () => string; readonly tokens: () => readonly TokenView[] };
  readonly readiness?: Pick<Readiness, 'results'>;
  /** Suites' suite_ticket age, the authorised corps and the AuthCodes (src/wecom/callback/provider-events.ts); never a ticket or code. */
  readonly provider?: () => ProviderSource;
  /** The callback queue per callback (figures only, never a payload), as of the last refresh. */
  readonly callbackQueue?: () => readonly CallbackQueueView[];
  /** The running process (doctor recognises a running wegate by it). */
  readonly about: () => { readonly version?: string; readonly pid?: number; readonly listen: Readonly<Record<string, number>> };
}

/** One callback's queue as the store's stats() gives it. */
export interface CallbackQueueView {
  readonly app: string;
  readonly depth: number;
  readonly oldestAgeMs: number;
  readonly dead: number;
  readonly headDueAt: number | undefined;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** The snapshot as JSON-ready data. */
export function diagnosticsSnapshot(src: DiagnosticsSources) {
  const now = src.clock();
  const about = src.about();
  return {
    service: 'wegate' as const,
    generatedAt: iso(now),
    wegate: { version: about.version ?? null, pid: about.pid ?? null, listen: { ...about.listen } },
    incidents: src.incidents.list().map((i) => ({
      app: i.app,
      api: i.api,
      cause: i.cause,
      source: i.source ?? 'wegate',
      errcode: i.errcode ?? null,
      fromIp: i.fromIp ?? null,
      expectedIp: i.expectedIp ?? null,
      localAddress: i.localAddress ?? null,
      hint: i.hint ?? null,
      count: i.count,
      firstSeen: iso(i.firstSeen),
      lastSeen: iso(i.lastSeen),
      en: i.en,
      zh: i.zh,
    })),
    egress: src.egress().map((p) => ({
      name: p.name,
      localAddress: p.localAddress ?? null,
      family: p.family ?? null,
      proxy: p.proxy === undefined ? null : proxyShown(p.proxy),
      expectedIp: p.expectedIp ?? null,
      ipEcho: p.ipEcho,
      observedIp: p.observedIp ?? null,
      matches: p.matches ?? null,
      checkedAt: iso(p.checkedAt),
      error: p.error ?? null,
    })),
    wecom: src.wecom
      ? {
          egress: src.wecom.egress(),
          tokens: src.wecom.tokens().map((t) => ({
            name: t.name,
            kind: t.kind,
            lastRefreshAt: iso(t.lastRefreshAt),
            expiresAt: iso(t.expiresAt),
            expiresInSeconds: t.expiresAt === undefined ? null : Math.round((t.expiresAt - now) / 1000),
            lastErrcode: t.lastErrcode ?? null,
            lastError: t.lastError ?? null,
            heldUntil: iso(t.heldUntil),
          })),
          readiness: (src.readiness?.results() ?? []).map((r: ProbeResult) => ({
            app: r.app,
            ok: r.ok,
            checkedAt: iso(r.checkedAt),
            errcode: r.errcode ?? null,
            code: r.code ?? null,
            en: r.en ?? null,
            zh: r.zh ?? null,
          })),
        }
      : null,
    callbackQueue: (src.callbackQueue?.() ?? []).map((q) => ({
      callback: q.app,
      depth: q.depth,
      oldestAgeSeconds: Math.round(q.oldestAgeMs / 1000),
      deadLetters: q.dead,
      nextAttemptAt: iso(q.headDueAt),
    })),
    provider: src.provider ? providerView(src.provider(), now) : null,
  };
}

function providerView(p: ProviderSource, now: number) {
  return {
    suites: p.suites.map((s) => ({
      name: s.name,
      suiteId: s.suiteId,
      kind: s.kind,
      suiteTicketReceivedAt: iso(s.ticketReceivedAt),
      suiteTicketAgeSeconds: s.ticketReceivedAt === undefined ? null : Math.max(0, Math.round((now - s.ticketReceivedAt) / 1000)),
      suiteTicketTimestamp: s.ticketTimestamp ?? null,
    })),
    corps: p.corps.map((c) => ({
      suiteId: c.suiteId,
      corpId: c.corpId,
      corpName: c.corpName ?? null,
      status: c.status,
      createdAt: iso(c.createdAt),
      updatedAt: iso(c.updatedAt),
      cancelledAt: iso(c.cancelledAt),
    })),
    authCodes: p.authCodes.map((a) => ({
      id: a.id,
      suiteId: a.suiteId,
      infoType: a.infoType,
      state: a.state,
      attempts: a.attempts,
      receivedAt: iso(a.receivedAt),
      nextAttemptAt: a.state === 'pending' ? iso(a.nextAttemptAt) : null,
      lastError: a.lastError ?? null,
      corpId: a.corpId ?? null,
    })),
  };
}

export type DiagnosticsSnapshot = ReturnType<typeof diagnosticsSnapshot>;

/** The proxy as scheme://host:port only (the profile never holds credentials in it; belt and braces). */
function proxyShown(origin: string): string {
  try {
    const u = new URL(origin);
    return `${u.protocol}//${u.host}`;
  } catch {
    return '(invalid)';
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** HTML-escape text for element content and quoted attributes. */
export const escapeHtml = (v: unknown): string => String(v ?? '–').replace(/[&<>"']/g, (c) => ESCAPES[c] as string);

const table = (head: readonly string[], rows: readonly (readonly unknown[])[], empty: string) =>
  rows.length === 0
    ? `<p class="empty">${escapeHtml(empty)}</p>`
    : `<table><thead><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${rows
        .map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`)
        .join('')}</tbody></table>`;

const yesNo = (v: boolean | null, yes: string, no: string) => (v === null ? '–' : v ? yes : no);

/** A readable bilingual page; every value is escaped (it may hold what WeCom or a vendor sent). */
export function renderDiagnosticsHtml(s: DiagnosticsSnapshot): string {
  const incidents = s.incidents
    .map(
      (i) =>
        `<li class="incident"><p class="meta">${escapeHtml(`${i.cause} · ${i.app} · ${i.api} · errcode ${i.errcode ?? '–'} · ×${i.count}`)}` +
        ` · ${escapeHtml(`first/首次 ${i.firstSeen} · last/最近 ${i.lastSeen}`)}` +
        `${i.fromIp !== null ? ` · ${escapeHtml(`WeCom saw / 企业微信看到 ${i.fromIp}`)}` : ''}` +
        `${i.expectedIp !== null ? ` · ${escapeHtml(`expected / 预期 ${i.expectedIp}`)}` : ''}` +
        `${i.hint !== null ? ` · hint ${escapeHtml(i.hint)}` : ''}</p>` +
        `<p lang="en">${escapeHtml(i.en)}</p><p lang="zh-CN">${escapeHtml(i.zh)}</p></li>`,
    )
    .join('');
  const egress = table(
    [
      'profile / 出口',
      'local address / 本机地址',
      'proxy / 代理',
      'expected IP / 预期 IP',
      'observed IP / 检测到的 IP',
      'match / 一致',
      'checked / 检测时间',
      'error / 错误',
    ],
    s.egress.map((p) => [
      p.name,
      p.localAddress,
      p.proxy,
      p.expectedIp,
      p.ipEcho ? p.observedIp : 'no ip_echo / 未配置 ip_echo',
      yesNo(p.matches, '✓ yes / 一致', '✗ no / 不一致'),
      p.checkedAt,
      p.error,
    ]),
    'No egress profile configured. / 未配置出口。',
  );
  const tokens = table(
    [
      'app / 应用',
      'kind / 类型',
      'last refresh / 最近刷新',
      'expires / 过期时间',
      'last errcode / 最近错误码',
      'last error / 最近错误',
      'held until / 暂停至',
    ],
    (s.wecom?.tokens ?? []).map((t) => [
      t.name,
      t.kind,
      t.lastRefreshAt,
      t.expiresAt === null ? null : `${t.expiresAt} (${t.expiresInSeconds} s)`,
      t.lastErrcode,
      t.lastError,
      t.heldUntil,
    ]),
    s.wecom ? 'No WeCom app configured. / 未配置企业微信应用。' : 'No wecom section in the configuration. / 配置中没有 wecom 部分。',
  );
  const ready = table(
    ['app / 应用', 'ready / 可用', 'checked / 检测时间', 'errcode', 'what to do / 处理建议'],
    (s.wecom?.readiness ?? []).map((r) => [
      r.app,
      r.ok ? '✓ ready / 可用' : '✗ not ready / 不可用',
      r.checkedAt,
      r.errcode,
      r.ok ? '' : `${r.en ?? ''} ${r.zh ?? ''}`,
    ]),
    'Not probed yet. / 尚未探测。',
  );
  const queue = table(
    ['callback / 回调', 'queued / 排队', 'oldest / 最早 (s)', 'dead letters / 死信', 'next attempt / 下次尝试'],
    s.callbackQueue.map((q) => [q.callback, String(q.depth), String(q.oldestAgeSeconds), String(q.deadLetters), q.nextAttemptAt]),
    'No queued callback. / 没有排队的回调。',
  );
  return `<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>wegate diagnostics / 诊断</title>
<style>body{font:14px/1.5 system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
.incident{margin:.6em 0;padding:.4em .8em;border-left:4px solid #c33;background:#fff6f6;list-style:none}.meta{color:#555;font-size:12px;margin:0}
.empty{color:#777}ul{padding:0}</style></head><body>
<h1>wegate diagnostics / 诊断信息</h1>
<p>${escapeHtml(`Generated / 生成时间 ${s.generatedAt} · version / 版本 ${s.wegate.version ?? '–'} · pid ${s.wegate.pid ?? '–'}`)} · <a href="?format=json">JSON</a></p>
<h2>Incidents (newest first) / 故障记录（最新在前）</h2>
${incidents === '' ? `<p class="empty">${escapeHtml('No incident. / 暂无故障。')}</p>` : `<ul>${incidents}</ul>`}
<h2>Egress / 出口</h2>
${egress}
<h2>WeCom tokens / 企业微信令牌${s.wecom ? escapeHtml(` (egress / 出口: ${s.wecom.egress})`) : ''}</h2>
${tokens}
<h2>WeCom readiness probe / 企业微信就绪探测</h2>
${ready}
<h2>WeCom callback queue / 企业微信回调队列</h2>
${queue}
${s.provider ? providerHtml(s.provider) : ''}</body></html>
`;
}

/** Suites, authorised corps and AuthCodes (provider events): ages and ids, never a ticket or code. */
function providerHtml(p: NonNullable<DiagnosticsSnapshot['provider']>): string {
  const suites = table(
    ['suite / 应用套件', 'suite id', 'kind / 类型', 'suite_ticket received / 接收时间', 'age / 已过去'],
    p.suites.map((s) => [
      s.name,
      s.suiteId,
      s.kind,
      s.suiteTicketReceivedAt ?? 'none yet: check the 指令回调URL / 尚未收到：请检查指令回调URL',
      s.suiteTicketAgeSeconds === null ? null : `${s.suiteTicketAgeSeconds} s`,
    ]),
    'No suite configured. / 未配置应用套件。',
  );
  const corps = table(
    [
      'suite id',
      'corp id / 企业ID',
      'name / 企业名称',
      'status / 状态',
      'authorised / 授权时间',
      'updated / 更新时间',
      'cancelled / 取消时间',
    ],
    p.corps.map((c) => [c.suiteId, c.corpId, c.corpName, c.status, c.createdAt, c.updatedAt, c.cancelledAt]),
    'No corp has authorised yet. / 尚无企业授权。',
  );
  const codes = table(
    [
      'id',
      'suite id',
      'event / 事件',
      'state / 状态',
      'attempts / 尝试次数',
      'received / 接收时间',
      'next / 下次尝试',
      'corp id / 企业ID',
      'last error / 最近错误',
    ],
    p.authCodes.map((a) => [a.id, a.suiteId, a.infoType, a.state, a.attempts, a.receivedAt, a.nextAttemptAt, a.corpId, a.lastError]),
    'No AuthCode received. / 尚未收到临时授权码。',
  );
  return `<h2>WeCom suites / 应用套件（suite_ticket）</h2>
${suites}
<h2>Authorised corps / 已授权企业</h2>
${corps}
<h2>AuthCodes (create_auth / reset_permanent_code) / 临时授权码</h2>
${codes}
`;
}
