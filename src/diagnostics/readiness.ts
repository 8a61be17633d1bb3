/**
 * wegate's own WeCom readiness: the doctor's probe (a token, then get_api_domain_ip, which WeCom
 * guards with 企业可信IP) per app, at start and on a timer (unref'd; close() stops it). The result
 * is shown in /diagnostics and as wegate_wecom_ready{app} (1 ready, 0 not); it never fails /readyz,
 * because most routes need no WeCom call and must keep serving while the whitelist is being fixed.
 * A change of state is logged once, not on every probe.
 */
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { WecomApi } from '../wecom/api/index.ts';
import { explainWecomError } from './explain.ts';

export interface ProbeResult {
  readonly app: string;
  readonly ok: boolean;
  /** Wall-clock ms of the probe. */
  readonly checkedAt: number;
  readonly errcode?: number;
  /** The error code of the failure (WG_WECOM_IP_NOT_ALLOWED …). */
  readonly code?: string;
  /** What failed and what to do, English and 简体中文 (the 60020 diagnosis when that was it). */
  readonly en?: string;
  readonly zh?: string;
}

export interface Readiness {
  /** The last result per app (apps not probed yet are left out), in config order. */
  results(): ProbeResult[];
  /** Probe every app now (joins a probe already running); never rejects. */
  checkNow(): Promise<ProbeResult[]>;
  /** Run the first probe and start the timer (idempotent). */
  start(): void;
  /** Stop the timer; a running probe finishes on its own. */
  close(): void;
}

export interface ReadinessDeps {
  readonly wecom: Pick<WecomApi, 'apps' | 'probe'>;
  readonly metrics: Pick<Metrics, 'wecomReady'>;
  readonly logger: Logger;
  readonly clock: () => number;
  /** 0: no timer (checkNow() still works). */
  readonly intervalMs: number;
}

export function createReadiness({ wecom, metrics, logger, clock, intervalMs }: ReadinessDeps): Readiness {
  const last = new Map<string, ProbeResult>();
  let running: Promise<ProbeResult[]> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let started = false;
  let closed = false;

  const probeOne = async (app: string): Promise<ProbeResult> => {
    let r: ProbeResult;
    try {
      const p = await wecom.probe(app);
      if (p.ok) r = { app, ok: true, checkedAt: clock() };
      else {
        const s = explainWecomError(p.error);
        r = {
          app,
          ok: false,
          checkedAt: clock(),
          ...(p.error.errcode !== undefined ? { errcode: p.error.errcode } : {}),
          code: p.error.code,
          en: s.en,
          zh: s.zh,
        };
      }
    } catch (e) {
      r = { app, ok: false, checkedAt: clock(), en: `probe failed: ${(e as Error).message}`, zh: `探测失败：${(e as Error).message}` };
    }
    // A probe that was running when the gateway shut down says nothing about WeCom.
    if (closed) return r;
    const before = last.get(app);
    last.set(app, r);
    metrics.wecomReady.set({ app }, r.ok ? 1 : 0);
    if (before?.ok !== r.ok || (!r.ok && before.en !== r.en)) {
      if (r.ok) logger.info({ app }, `WeCom app ${app} is ready: get_api_domain_ip succeeded (企业微信应用可用)`);
      else logger.warn({ app, errcode: r.errcode, code: r.code, action_zh: r.zh }, `WeCom app ${app} is not ready: ${r.en}`);
    }
    return r;
  };

  const checkNow = () => {
    running ??= Promise.all(wecom.apps.map(probeOne)).finally(() => {
      running = undefined;
    });
    return running;
  };

  return {
    results: () => wecom.apps.flatMap((a) => last.get(a) ?? []),
    checkNow,
    start() {
      if (started || closed) return;
      started = true;
      if (wecom.apps.length === 0) return;
      void checkNow();
      if (intervalMs > 0) {
        timer = setInterval(() => void checkNow(), intervalMs);
        timer.unref();
      }
    },
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}
