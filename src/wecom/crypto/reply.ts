/**
 * The encrypted passive reply (被动回复) WeCom expects from an app callback answered in sync mode, in
 * the layout of the official library's template (AES_TEXT_RESPONSE_TEMPLATE, WXBizMsgCrypt3.py):
 *
 *   <xml><Encrypt><![CDATA[…]]></Encrypt><MsgSignature><![CDATA[…]]></MsgSignature>
 *   <TimeStamp>…</TimeStamp><Nonce><![CDATA[…]]></Nonce></xml>
 *
 * with MsgSignature = sign(TimeStamp, Nonce, Encrypt). Pure string building.
 */

export interface PassiveReply {
  /** base64 ciphertext (CallbackCipher.encrypt). */
  readonly encrypt: string;
  /** msg_signature over timestamp, nonce and encrypt (CallbackCipher.sign). */
  readonly signature: string;
  /** Seconds since the epoch, digits only (it is not in a CDATA section). */
  readonly timestamp: string;
  readonly nonce: string;
}

const DIGITS_RE = /^[0-9]{1,20}$/;
/** Characters XML 1.0 cannot carry at all, not even in CDATA. */
const NOT_XML_RE = /[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/u;

/** A CDATA section holding `value`; a "]]>" inside is split across two sections. */
function cdata(name: string, value: string): string {
  if (NOT_XML_RE.test(value)) throw new TypeError(`passive reply ${name} has characters XML cannot carry`);
  return `<![CDATA[${value.replaceAll(']]>', ']]]]><![CDATA[>')}]]>`;
}

/** The XML body of an encrypted passive reply. Throws a TypeError on a non-numeric timestamp. */
export function buildPassiveReply(reply: PassiveReply): string {
  if (!DIGITS_RE.test(reply.timestamp)) throw new TypeError('passive reply timestamp must be 1..20 digits');
  return (
    `<xml><Encrypt>${cdata('Encrypt', reply.encrypt)}</Encrypt>` +
    `<MsgSignature>${cdata('MsgSignature', reply.signature)}</MsgSignature>` +
    `<TimeStamp>${reply.timestamp}</TimeStamp>` +
    `<Nonce>${cdata('Nonce', reply.nonce)}</Nonce></xml>`
  );
}
