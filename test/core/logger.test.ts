import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger, redactText } from '../../src/core/logger.ts';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return { lines, stream };
}

t.test('redactText: hides secret query parameters and JSON fields when they appear in text', async (t) => {
  const cases: [name: string, input: string, secret: string][] = [
    ['access_token in URL', 'GET /cgi-bin/user/get?access_token=AbC123xyz&userid=zhangsan', 'AbC123xyz'],
    ['corpsecret in URL', 'https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=S3cr3tValue', 'S3cr3tValue'],
    ['OAuth code', '/wecom/oauth/callback?code=CODE9988&state=x', 'CODE9988'],
    ['upper-case name', '/x?ACCESS_TOKEN=TOPSECRET', 'TOPSECRET'],
    ['JSON body', '{"access_token":"tok-777","expires_in":7200}', 'tok-777'],
    ['form body', 'secret=hunter2&name=x', 'hunter2'],
  ];
  for (const [name, input, secret] of cases) {
    const out = redactText(input);
    t.notMatch(out, secret, `${name}: secret removed`);
    t.match(out, '[REDACTED]', `${name}: marker present`);
  }
  t.equal(redactText('/api/user?id=7&codec=h264'), '/api/user?id=7&codec=h264', 'lookalike names untouched');
});

t.test('createLogger: redacts secrets in fields, headers and messages when logging', async (t) => {
  const { lines, stream } = capture();
  const log = createLogger({ level: 'info', destination: stream });
  log.info(
    {
      url: '/cb?code=OAUTHCODE1&state=s',
      req: { headers: { cookie: 'wegate_session=COOKIEVAL', authorization: 'Bearer AUTHVAL' } },
      access_token: 'FIELDTOKEN',
    },
    'fetching https://qyapi/cgi-bin/gettoken?corpsecret=MSGSECRET',
  );
  log.error({ err: new Error('upstream said access_token=ERRTOKEN is invalid') }, 'failed');
  const all = lines.join('\n');
  for (const s of ['OAUTHCODE1', 'COOKIEVAL', 'AUTHVAL', 'FIELDTOKEN', 'MSGSECRET', 'ERRTOKEN']) t.notMatch(all, s, `${s} not logged`);
  t.equal(lines.length, 2, 'both lines written');
  t.match(JSON.parse(lines[0] as string), { level: 'info', service: 'wegate' });
});
