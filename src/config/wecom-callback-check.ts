/**
 * Checks of `wecom.callbacks` a schema cannot express: unique names and paths, the apps and suites
 * they name present, a non-empty receiveid set, each secret set exactly one way, a suite callback's
 * deadline under WeCom's 1000 ms, and `deliver.mode: queue` refused without the state store (`state:`).
 * The Token and EncodingAESKey come from files or env: their format is checked when wegate starts
 * (src/wecom/callback reads them), never here.
 */
import type { CheckContext, Segment } from './validate.ts';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Longest deadline of a suite (指令回调) callback's upstream: WeCom wants "success" within 1000 ms. */
export const SUITE_CALLBACK_MAX_TIMEOUT_MS = 900;

export function checkWecomCallbacks(data: Obj, ctx: CheckContext): void {
  const wecom = data['wecom'];
  if (!isObj(wecom) || !Array.isArray(wecom['callbacks'])) return;
  const callbacks = wecom['callbacks'] as unknown[];
  const appNames = new Set((Array.isArray(wecom['apps']) ? wecom['apps'] : []).flatMap((a: unknown) => (isObj(a) && typeof a['name'] === 'string' ? [a['name']] : [])));
  const suiteNames = new Set(
    (Array.isArray(wecom['suites']) ? wecom['suites'] : []).flatMap((s: unknown) => (isObj(s) && typeof s['name'] === 'string' ? [s['name']] : [])),
  );
  const names = new Map<string, number>();
  const paths = new Map<string, number>();

  callbacks.forEach((c, i) => {
    if (!isObj(c)) return;
    const at = (...k: Segment[]): Segment[] => ['wecom', 'callbacks', i, ...k];
    const unique = (key: 'name' | 'path', seen: Map<string, number>) => {
      const v = str(c[key]);
      if (v === undefined || ctx.failed(at(key))) return;
      const first = seen.get(v);
      if (first !== undefined) ctx.report(at(key), `must be unique, got ${JSON.stringify(v)} which wecom.callbacks[${first}] also uses`);
      else seen.set(v, i);
    };
    unique('name', names);
    unique('path', paths);

    const secret = (path: Segment[], ref: unknown) => {
      if (!isObj(ref) || ctx.failed(path)) return;
      const n = (ref['file'] !== undefined ? 1 : 0) + (ref['env'] !== undefined ? 1 : 0);
      if (n !== 1) ctx.report(path, `must set exactly one of \`file\` or \`env\`, got ${n === 0 ? 'neither' : 'both'}`);
    };
    secret(at('token'), c['token']);
    secret(at('encoding_aes_key'), c['encoding_aes_key']);

    const kind = str(c['kind']) ?? 'app';
    const app = str(c['app']);
    const suite = str(c['suite']);
    if (app !== undefined && !appNames.has(app) && !ctx.failed(at('app'))) {
      ctx.report(at('app'), `must name an entry of wecom.apps, got ${JSON.stringify(app)} (defined: ${[...appNames].join(', ') || 'none'})`);
    }
    if (suite !== undefined && !suiteNames.has(suite) && !ctx.failed(at('suite'))) {
      ctx.report(at('suite'), `must name an entry of wecom.suites, got ${JSON.stringify(suite)} (defined: ${[...suiteNames].join(', ') || 'none'})`);
    }
    const ids = Array.isArray(c['receive_ids']) ? c['receive_ids'].length : 0;
    if (kind === 'app' && app === undefined && ids === 0 && wecom['corp_id'] === undefined) {
      ctx.report(at('receive_ids'), 'must list the corp id this callback is encrypted for (or set `app`, or wecom.corp_id)');
    }
    if (kind === 'suite' && suite === undefined && ids === 0) {
      ctx.report(at('suite'), 'must name the wecom.suites entry (suite / template id) of a suite callback, or list its receive_ids');
    }
    if (kind === 'data' && ids === 0) {
      ctx.report(at('receive_ids'), "must list the authorising corp ids of a data callback (and the 服务商's own corp id, used by the URL check)");
    }

    const deliver = c['deliver'];
    if (!isObj(deliver)) return;
    secret(at('deliver', 'secret'), deliver['secret']);
    if (deliver['mode'] === 'queue' && data['state'] === undefined && !ctx.failed(at('deliver', 'mode'))) {
      ctx.report(
        at('deliver', 'mode'),
        'queue needs the state store: set state.dir (e.g. /var/lib/wegate) / queue 模式需要状态存储：请设置 state.dir',
      );
    }
    const timeout = deliver['timeout_ms'];
    if (kind === 'suite' && typeof timeout === 'number' && timeout > SUITE_CALLBACK_MAX_TIMEOUT_MS && !ctx.failed(at('deliver', 'timeout_ms'))) {
      ctx.report(
        at('deliver', 'timeout_ms'),
        `must be at most ${SUITE_CALLBACK_MAX_TIMEOUT_MS} for a suite callback (WeCom wants "success" within 1000 ms), got ${timeout}`,
      );
    }
  });
}
