/** The small pieces of the callback stage on their own: query decoding, de-dup keys, safe XML. */
import t from 'tap';
import { createMemoryDedupe, createSafeXml, dedupeKey, parseCallbackQuery } from '../../../src/wecom/callback/index.ts';

t.test('parseCallbackQuery: decodes each value exactly once when it is percent-encoded', async (t) => {
  const r = parseCallbackQuery('?msg_signature=ab&timestamp=1&nonce=2&echostr=a%2Bb%252B+c%3D');
  t.ok(r.ok);
  if (r.ok) t.equal(r.query.echostr, 'a+b%2B+c=', '%2B → +, %252B → %2B, raw + kept');
});

t.test('parseCallbackQuery: refuses repeated, missing and malformed parameters when they would be ambiguous', async (t) => {
  const cases: [string, RegExp][] = [
    ['?msg_signature=a&msg_signature=b&timestamp=1&nonce=2', /more than once/],
    ['?timestamp=1&nonce=2', /msg_signature is missing/],
    ['?msg_signature=a&timestamp=-1&nonce=2', /timestamp/],
    ['?msg_signature=a&timestamp=1', /nonce/],
    ['?msg_signature=%E0%A4%A&timestamp=1&nonce=2', /percent-encoding/],
    [`?msg_signature=a&timestamp=1&nonce=2&x=${'y'.repeat(5000)}`, /longer than/],
  ];
  for (const [q, re] of cases) {
    const r = parseCallbackQuery(q);
    t.notOk(r.ok, q.slice(0, 40));
    if (!r.ok) t.match(r.reason, re);
  }
  t.ok(parseCallbackQuery('?msg_signature=a&timestamp=1&nonce=2&corpid=ww1&other').ok, 'other parameters ignored ($CORPID$)');
});

t.test('dedupeKey: the same MsgId merges and distinct plaintexts never do when keys are built', async (t) => {
  t.equal(dedupeKey('a', '1', 'x'), dedupeKey('a', '1', 'y'), 'MsgId decides when present');
  t.not(dedupeKey('a', '1', 'x'), dedupeKey('b', '1', 'x'), 'per callback');
  t.not(dedupeKey('a', undefined, 'x'), dedupeKey('a', undefined, 'x '), 'plaintext hash otherwise');
  t.not(dedupeKey('a', undefined, 'msgid\u00001'), dedupeKey('a', '1', 'z'), 'the two kinds of key never collide');
});

t.test('createMemoryDedupe: forgets a key after its TTL and keeps at most max keys when the clock moves', async (t) => {
  let now = 1_000_000;
  const d = createMemoryDedupe({ max: 2, ttlMs: 1000, now: () => now });
  await d.add('a');
  t.equal(await d.has('a'), true);
  now += 1001;
  t.equal(await d.has('a'), false, 'expired');
  await d.add('b');
  await d.add('c');
  await d.add('e');
  t.equal(await d.has('b'), false, 'the oldest went first');
  t.equal(await d.has('e'), true);
});

t.test('createSafeXml: values stay strings and repeated elements become lists when WeCom sends nested XML', async (t) => {
  const r = createSafeXml().parse(
    '<xml><UserID>007</UserID><Count>2</Count><PicList><item><PicMd5Sum><![CDATA[a]]></PicMd5Sum></item><item><PicMd5Sum>b</PicMd5Sum></item></PicList></xml>',
  );
  t.ok(r.ok);
  if (r.ok) t.same(r.fields, { UserID: '007', Count: '2', PicList: { item: [{ PicMd5Sum: 'a' }, { PicMd5Sum: 'b' }] } });
  const ent = createSafeXml().parse('<xml><a>&amp;lt;</a></xml>');
  t.same(ent.ok ? ent.fields : undefined, { a: '&amp;lt;' }, 'entities are not expanded');
});
