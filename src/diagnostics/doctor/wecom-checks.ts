/**
 * Doctor checks of WeCom, through the egress `wecom.egress` names: gettoken per app, then one call
 * WeCom guards with 企业可信IP (get_api_domain_ip). gettoken succeeds from any IP, so only the second
 * proves the whitelist; its 60020 comes back as the diagnosis sentence naming the console step.
 */
import { WecomApiError } from '../../wecom/api/index.ts';
import { explainWecomError } from '../explain.ts';
import { type CheckResult, type DoctorCheck, result } from './types.ts';

const noWecom = (check: string) => [result(check, 'wecom', 'skip', { en: 'no wecom section', zh: '未配置 wecom' })];

export const wecomTokenCheck: DoctorCheck = {
  name: 'wecom_token',
  async run(ctx) {
    const w = await ctx.wecom();
    if (w === undefined) return noWecom('wecom_token');
    if ('error' in w) return [result('wecom_token', 'wecom', 'fail', { en: w.error, zh: `无法创建企业微信客户端：${w.error}` })];
    const { api } = w;
    if (api.apps.length === 0) return [result('wecom_token', 'wecom', 'skip', { en: 'no app in wecom.apps', zh: 'wecom.apps 中没有应用' })];
    const via = { en: `through egress ${api.egress.name}`, zh: `经出口 ${api.egress.name}` };
    return Promise.all(
      api.apps.map(async (app): Promise<CheckResult> => {
        const subject = `app ${app}`;
        try {
          await api.accessToken(app);
          const st = api.tokenStatus().find((s) => s.name === app && s.kind !== 'suite');
          const left = st?.expiresAt !== undefined ? Math.round((st.expiresAt - ctx.now()) / 1000) : undefined;
          return result('wecom_token', subject, 'ok', {
            en: `token obtained ${via.en}${left !== undefined ? ` (valid for ${left} s)` : ''}`,
            zh: `已获取令牌（${via.zh}${left !== undefined ? `，有效期 ${left} 秒` : ''}）`,
          });
        } catch (e) {
          if (!(e instanceof WecomApiError)) throw e;
          const s = explainWecomError(e);
          const errcode = e.errcode !== undefined ? ` (errcode ${e.errcode})` : '';
          return result('wecom_token', subject, e.kind === 'not_ready' ? 'warn' : 'fail', {
            en: `${s.en}${errcode}`,
            zh: `${s.zh}${errcode}`,
          });
        }
      }),
    );
  },
};

export const wecomTrustedIpCheck: DoctorCheck = {
  name: 'wecom_trusted_ip',
  async run(ctx) {
    const w = await ctx.wecom();
    if (w === undefined) return noWecom('wecom_trusted_ip');
    if ('error' in w) return [];
    const { api } = w;
    return Promise.all(
      api.apps.map(async (app): Promise<CheckResult> => {
        const subject = `app ${app}`;
        const token = ctx.results.find((r) => r.check === 'wecom_token' && r.subject === subject);
        if (token && token.status !== 'ok')
          return result('wecom_trusted_ip', subject, 'skip', {
            en: 'needs a token (see wecom_token above)',
            zh: '需要先获取令牌（见上方 wecom_token）',
          });
        const p = await api.probe(app);
        if (p.ok) {
          return result('wecom_trusted_ip', subject, 'ok', {
            en: `/cgi-bin/get_api_domain_ip succeeded through egress ${api.egress.name}: WeCom accepts this egress (企业可信IP)`,
            zh: `/cgi-bin/get_api_domain_ip 调用成功（经出口 ${api.egress.name}）：企业微信接受当前出口 IP（企业可信IP）`,
          });
        }
        const s = explainWecomError(p.error);
        const errcode = p.error.errcode !== undefined ? ` (errcode ${p.error.errcode})` : '';
        return result('wecom_trusted_ip', subject, p.error.kind === 'not_ready' ? 'warn' : 'fail', {
          en: `${s.en}${errcode}`,
          zh: `${s.zh}${errcode}`,
        });
      }),
    );
  },
};
