/** Messages and events (POST): what is refused, and why, before anything reaches the vendor. */
import { connect } from 'node:net';
import t from 'tap';
import { raw, startUpstream } from '../../helpers/gateway.ts';
import { parseExposition, valueOf } from '../../helpers/prom-text.ts';
import { SAMPLE } from '../crypto/helpers.ts';
import { CORP, type CallbackGateway, SAMPLE_SETUP, startCallbackGateway, TOKEN, textMessage } from './helpers.ts';

/** POST `body` with a valid signature over `encrypt` (the sender's current clock). */
function postSigned(cg: CallbackGateway, encrypt: string, body: string, opts: { timestamp?: string } = {}) {
  return cg.sender.request('POST', `${cg.path}?${cg.sender.query(encrypt, opts)}`, body);
}

const outcomes = async (cg: CallbackGateway, outcome: string) =>
  valueOf(parseExposition(await (await fetch(`http://127.0.0.1:${cg.gw.adminPort}/metrics`)).text()), 'wegate_wecom_callbacks_total', {
    callback: 'cb',
    outcome,
  });

t.test('callback POST: the official vector is verified, decrypted and delivered when the sample POST arrives', async (t) => {
  const cg = await startCallbackGateway(t, SAMPLE_SETUP);
  const { msgSignature, timestamp, nonce, encrypt } = SAMPLE.post;
  const body = cg.sender.envelope(encrypt, SAMPLE.receiveId, '218');
  const a = await cg.sender.request('POST', `${cg.path}?msg_signature=${msgSignature}&timestamp=${timestamp}&nonce=${nonce}`, body);
  t.equal(a.status, 200);
  t.equal(a.body, '', 'empty 200: the vendor answered nothing');
  t.equal(cg.vendor.deliveries.length, 1);
  const d = cg.vendor.deliveries[0]?.json ?? {};
  t.equal(d['xml'], SAMPLE.post.plaintext, 'the raw inner XML');
  t.equal(d['event'], 'text');
  t.equal(d['msg_id'], '4561255354251345929', 'MsgId kept as a string (beyond 2^53)');
  t.match(d['fields'], { FromUserName: 'mycreate', Content: 'hello', CreateTime: '1409659813', AgentID: '218' });
});

t.test('callback POST: every pad length 1..32 is decrypted when the sender pads by hand', async (t) => {
  const cg = await startCallbackGateway(t);
  const pads = new Set<number>();
  for (let n = 0; n < 32; n++) {
    const msg = textMessage(String(1000 + n), 'x'.repeat(n));
    const pad = 32 - ((20 + Buffer.byteLength(msg) + CORP.length) % 32);
    pads.add(pad);
    const r = await cg.sender.send(msg);
    t.equal(r.last.status, 200, `pad ${pad}`);
  }
  t.equal(pads.size, 32, 'all 32 pad lengths were sent');
  t.equal(cg.vendor.deliveries.length, 32);
});

t.test('callback POST: 400 naming the check when padding, base64 or the length field is broken', async (t) => {
  const cg = await startCallbackGateway(t);
  let msg = textMessage('7', 'hi');
  // A message whose natural pad is below 32, so a pad value one larger reaches into the receiveid.
  while (32 - ((20 + Buffer.byteLength(msg) + CORP.length) % 32) === 32) msg += ' ';
  const count = 32 - ((20 + Buffer.byteLength(msg) + CORP.length) % 32);
  const cases: [string, string, string][] = [
    ['pad value 0', cg.sender.encrypt(msg, { pad: { count, value: 0 } }), 'WG_CALLBACK_BAD_PADDING'],
    ['pad value 33', cg.sender.encrypt(msg, { pad: { count, value: 33 } }), 'WG_CALLBACK_BAD_PADDING'],
    ['pad bytes differ', cg.sender.encrypt(msg, { pad: { count, value: count + 1 } }), 'WG_CALLBACK_BAD_PADDING'],
    ['length field too large', cg.sender.encrypt(msg, { lengthField: 100_000 }), 'WG_CALLBACK_BAD_LENGTH'],
    ['not base64', `${cg.sender.encrypt(msg).slice(0, -4)}*!*!`, 'WG_CALLBACK_BAD_ENCODING'],
    ['too short', 'QUJD', 'WG_CALLBACK_BAD_LENGTH'],
  ];
  for (const [name, encrypt, code] of cases) {
    const a = await postSigned(cg, encrypt, cg.sender.envelope(encrypt));
    t.equal(a.status, 400, name);
    t.match(JSON.parse(a.body), { error: code }, name);
  }
  t.equal(cg.vendor.requests, 0, 'nothing reached the vendor');
});

t.test('callback POST: 403 before decrypting when the signature is wrong, and the receiveid refused after it', async (t) => {
  const cg = await startCallbackGateway(t);
  const encrypt = cg.sender.encrypt(textMessage('8', 'x'));
  const bad = await cg.sender.request(
    'POST',
    `${cg.path}?${cg.sender.query(encrypt, { signature: '0'.repeat(40) })}`,
    cg.sender.envelope(encrypt),
  );
  t.equal(bad.status, 403);
  t.match(JSON.parse(bad.body), { error: 'WG_CALLBACK_BAD_SIGNATURE' });
  const other = cg.sender.encrypt(textMessage('9', 'x'), { receiveId: 'wwNotOurs' });
  const wrongId = await postSigned(cg, other, cg.sender.envelope(other));
  t.equal(wrongId.status, 403);
  t.match(JSON.parse(wrongId.body), { error: 'WG_CALLBACK_BAD_RECEIVE_ID' });
  t.equal(cg.vendor.requests, 0);
  t.equal(await outcomes(cg, 'bad_signature'), 1);
  t.equal(await outcomes(cg, 'refused'), 1);
});

t.test('callback POST: DOCTYPE, entity bombs, deep nesting and __proto__ tags are refused without a crash', async (t) => {
  const cg = await startCallbackGateway(t);
  const encrypt = cg.sender.encrypt(textMessage('10', 'x'));
  const lol = '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>';
  const outer: [string, string][] = [
    ['DOCTYPE', `<!DOCTYPE xml SYSTEM "file:///etc/passwd">${cg.sender.envelope(encrypt)}`],
    ['entity bomb', `${lol}<xml><Encrypt>&lol2;</Encrypt></xml>`],
    ['lower-case doctype', `<!doctype xml>${cg.sender.envelope(encrypt)}`],
    ['deep nesting', `<xml>${'<a>'.repeat(5000)}${'</a>'.repeat(5000)}<Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`],
    ['__proto__ tag', `<xml><__proto__><polluted>1</polluted></__proto__><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`],
    ['constructor tag', `<xml><constructor><prototype>1</prototype></constructor><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`],
    ['not XML', 'hello'],
    ['unclosed', `<xml><Encrypt><![CDATA[${encrypt}]]></Encrypt>`],
    ['no Encrypt', '<xml><ToUserName>x</ToUserName></xml>'],
    ['two Encrypt', `<xml><Encrypt><![CDATA[${encrypt}]]></Encrypt><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`],
  ];
  for (const [name, body] of outer) {
    const a = await postSigned(cg, encrypt, body);
    t.equal(a.status, 400, name);
    t.match(JSON.parse(a.body), { error: 'WG_CALLBACK_BAD_PAYLOAD' }, name);
  }
  // The same shapes inside a correctly signed and encrypted message (WeCom would never send them).
  for (const [name, inner] of [
    ['inner DOCTYPE', `<!DOCTYPE x [<!ENTITY e "x">]><xml><MsgType>text</MsgType><Content>&e;</Content></xml>`],
    ['inner __proto__', '<xml><MsgType>text</MsgType><__proto__><isAdmin>1</isAdmin></__proto__></xml>'],
    ['inner deep nesting', `<xml>${'<a>'.repeat(100)}${'</a>'.repeat(100)}</xml>`],
  ] as const) {
    const enc = cg.sender.encrypt(inner);
    const a = await postSigned(cg, enc, cg.sender.envelope(enc));
    t.equal(a.status, 400, name);
  }
  t.equal(({} as Record<string, unknown>)['polluted'], undefined, 'no prototype pollution');
  t.equal(cg.vendor.requests, 0);
  const ok = await cg.sender.send(textMessage('11', 'still fine'));
  t.equal(ok.last.status, 200, 'the process still serves');
});

t.test('callback POST: userid 007 stays "007" and CDATA is kept verbatim when values look like numbers', async (t) => {
  const cg = await startCallbackGateway(t);
  const r = await cg.sender.send(textMessage('12', '0012.50', '007'));
  t.equal(r.last.status, 200);
  t.match(cg.vendor.deliveries[0]?.json['fields'], { FromUserName: '007', Content: '0012.50', MsgId: '12' });
});

t.test('callback POST: 413 when the body is larger than max_body_bytes, by Content-Length and by chunks', async (t) => {
  const cg = await startCallbackGateway(t);
  const big = `<xml><Encrypt>${'A'.repeat(300 * 1024)}</Encrypt></xml>`;
  const a = await cg.sender.request('POST', `${cg.path}?${cg.sender.query('x')}`, big);
  t.equal(a.status, 413);
  const chunked = await cg.sender.request('POST', `${cg.path}?${cg.sender.query('x')}`, big, {
    'content-length': '',
    'transfer-encoding': 'chunked',
  });
  t.equal(chunked.status, 413);
  t.equal(cg.vendor.requests, 0);
});

t.test('callback POST: a trickled body is taken when it completes, and refused when it stalls', async (t) => {
  const cg = await startCallbackGateway(t);
  const msg = textMessage('13', 'slow');
  const encrypt = cg.sender.encrypt(msg);
  const body = cg.sender.envelope(encrypt);
  const q = cg.sender.query(encrypt);
  const trickle = (stallAfter: number | undefined) =>
    new Promise<string>((resolve) => {
      const sock = connect(cg.gw.httpPort, '127.0.0.1');
      let out = '';
      sock.on('data', (d) => (out += d));
      sock.on('close', () => resolve(out));
      sock.on('error', () => resolve(out));
      sock.write(
        `POST ${cg.path}?${q} HTTP/1.1\r\nHost: a.example\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`,
      );
      let i = 0;
      const step = () => {
        if (stallAfter !== undefined && i >= stallAfter) return;
        if (i >= body.length) return;
        sock.write(body.slice(i, i + 40));
        i += 40;
        setTimeout(step, 10);
      };
      step();
      t.teardown(() => sock.destroy());
    });
  t.match(await trickle(undefined), /^HTTP\/1\.1 200 /, 'a slow but complete body');
  t.match(await trickle(3), /^HTTP\/1\.1 408 /, 'a stalled body');
  t.equal(cg.vendor.deliveries.length, 1);
});

t.test('callback POST: 403 and counted as stale when the timestamp is outside max_age_s', async (t) => {
  const cg = await startCallbackGateway(t, { maxAgeS: 600 });
  const now = Math.floor(Date.now() / 1000);
  for (const ts of [now - 601, now + 601]) {
    const encrypt = cg.sender.encrypt(textMessage(String(ts), 'old'));
    const a = await postSigned(cg, encrypt, cg.sender.envelope(encrypt), { timestamp: String(ts) });
    t.equal(a.status, 403);
    t.match(JSON.parse(a.body), { error: 'WG_CALLBACK_STALE' });
  }
  const fresh = cg.sender.encrypt(textMessage('14', 'fresh'));
  t.equal((await postSigned(cg, fresh, cg.sender.envelope(fresh), { timestamp: String(now - 599) })).status, 200);
  t.equal(await outcomes(cg, 'stale'), 2);
  t.equal(cg.vendor.deliveries.length, 1);
});

t.test('callback POST: logs carry callback, event and MsgId but never the Token, key, ciphertext or content', async (t) => {
  const cg = await startCallbackGateway(t);
  const content = 'SECRET-CONTENT-4711';
  const msg = textMessage('15', content);
  const r = await cg.sender.send(msg);
  t.equal(r.last.status, 200);
  const line = cg.gw.logs.lines.find((l) => l['msg'] === 'wecom callback delivered');
  t.match(line, { callback: 'cb', event: 'text', msg_id: '15', outcome: 'ok' });
  const text = cg.gw.logs.text();
  for (const secret of [TOKEN, content, 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG']) t.notOk(text.includes(secret));
  t.notOk(/[A-Za-z0-9+/]{60,}={0,2}/.test(text), 'no ciphertext');
});

t.test(
  'callback POST: no 100 Continue for a body over the limit, and one for an acceptable body, when the client expects it',
  async (t) => {
    const cg = await startCallbackGateway(t);
    const big = await raw(
      cg.gw.httpPort,
      `POST ${cg.path}?${cg.sender.query('x')} HTTP/1.1\r\nHost: a.example\r\nExpect: 100-continue\r\nContent-Length: 999999\r\n\r\n`,
      1000,
    );
    t.match(big, /^HTTP\/1\.1 413 /, 'refused before the body is sent');
    t.notMatch(big, /100 Continue/);
    const encrypt = cg.sender.encrypt(textMessage('16', 'continue'));
    const body = cg.sender.envelope(encrypt);
    const ok = await raw(cg.gw.httpPort, [
      `POST ${cg.path}?${cg.sender.query(encrypt)} HTTP/1.1\r\nHost: a.example\r\nExpect: 100-continue\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`,
      body,
    ]);
    t.match(ok, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    t.equal(cg.vendor.deliveries.length, 1);
  },
);

t.test('callback POST: a WebSocket handshake on a callback path is refused, never proxied, when a catch-all route exists', async (t) => {
  const up = await startUpstream(t);
  const cg = await startCallbackGateway(t, { config: { routes: [{ upstream: up.url }] } });
  const r = await raw(
    cg.gw.httpPort,
    `GET ${cg.path} HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    1000,
  );
  t.match(r, /^HTTP\/1\.1 405 /);
  t.equal(up.seen.length, 0);
});
