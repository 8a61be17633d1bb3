/**
 * The encrypted passive reply: the exact envelope, CDATA safety, and a reply that WeCom's side
 * (signature check + decryption, parsed with fast-xml-parser as the callback handler will) accepts.
 */
import { XMLParser } from 'fast-xml-parser';
import t from 'tap';
import { buildPassiveReply, createCallbackCipher } from '../../../src/wecom/crypto/index.ts';
import { SAMPLE } from './helpers.ts';

const parser = new XMLParser({ parseTagValue: false, processEntities: false });

t.test('buildPassiveReply: writes the official envelope when given encrypt, signature, timestamp and nonce', async (t) => {
  const xml = buildPassiveReply({ encrypt: 'QUJD+/==', signature: 'a'.repeat(40), timestamp: '1409659813', nonce: '1372623149' });
  t.equal(
    xml,
    '<xml><Encrypt><![CDATA[QUJD+/==]]></Encrypt><MsgSignature><![CDATA[' +
      'a'.repeat(40) +
      ']]></MsgSignature><TimeStamp>1409659813</TimeStamp><Nonce><![CDATA[1372623149]]></Nonce></xml>',
  );
});

t.test('buildPassiveReply: keeps values intact when they contain "]]>" or markup', async (t) => {
  const cases = ['a]]>b', ']]>', ']]]]>', '<xml>&amp;</xml>', '张三'];
  for (const nonce of cases) {
    const xml = buildPassiveReply({ encrypt: 'QUJD', signature: 'b'.repeat(40), timestamp: '1', nonce });
    t.equal(parser.parse(xml).xml.Nonce, nonce, JSON.stringify(nonce));
  }
});

t.test('buildPassiveReply: refuses values XML cannot carry when timestamp or nonce are malformed', async (t) => {
  const base = { encrypt: 'QUJD', signature: 'c'.repeat(40), timestamp: '1409659813', nonce: '1' };
  const cases: { name: string; reply: typeof base }[] = [
    { name: 'timestamp with a letter', reply: { ...base, timestamp: '14096598x3' } },
    { name: 'timestamp with markup', reply: { ...base, timestamp: '1</TimeStamp><x>' } },
    { name: 'empty timestamp', reply: { ...base, timestamp: '' } },
    { name: 'timestamp of 21 digits', reply: { ...base, timestamp: '1'.repeat(21) } },
    { name: 'nonce with a control character', reply: { ...base, nonce: 'a\u0001b' } },
    { name: 'nonce with a lone surrogate', reply: { ...base, nonce: 'a\ud800b' } },
  ];
  for (const c of cases) t.throws(() => buildPassiveReply(c.reply), TypeError, c.name);
});

t.test('CallbackCipher.passiveReply: produces a reply that verifies and decrypts when read back as WeCom would', async (t) => {
  const cipher = createCallbackCipher({ token: SAMPLE.token, encodingAesKey: SAMPLE.encodingAesKey });
  const message =
    '<xml><ToUserName><![CDATA[mycreate]]></ToUserName><FromUserName><![CDATA[wx5823bf96d3bd56c7]]></FromUserName>' +
    '<CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[this is a test]]></Content>' +
    '<MsgId>1234567890123456</MsgId><AgentID>128</AgentID></xml>';
  const xml = cipher.passiveReply(message, SAMPLE.receiveId, '1409659813', '1372623149', Buffer.alloc(16, 7));
  const reply = parser.parse(xml).xml as Record<string, string>;
  t.same(Object.keys(reply), ['Encrypt', 'MsgSignature', 'TimeStamp', 'Nonce'], 'the four fields, in order');
  t.equal(reply['TimeStamp'], '1409659813');
  t.equal(reply['Nonce'], '1372623149');
  t.ok(cipher.verify(reply['MsgSignature']!, reply['TimeStamp']!, reply['Nonce']!, reply['Encrypt']!), 'MsgSignature holds');
  t.same(cipher.decrypt(reply['Encrypt']!), { message, receiveId: SAMPLE.receiveId }, 'Encrypt decrypts to the reply');
  const again = cipher.passiveReply(message, SAMPLE.receiveId, '1409659813', '1372623149', Buffer.alloc(16, 8));
  t.not(again, xml, 'other random bytes give another ciphertext');
});
