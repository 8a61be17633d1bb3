/**
 * `wegate wecom decrypt`: what an admin runs when WeCom says "回调URL校验失败" or a vendor says a
 * callback never arrived. It takes a captured request (the query, and for a POST the body), checks
 * the signature, decrypts, checks the receiveid, and prints the plaintext — or one line naming the
 * check that failed. No freshness window (captures are old). The settings come from the config
 * (`--config FILE --app NAME`, NAME = a wecom.callbacks entry) or are given directly.
 *
 *   wegate wecom decrypt --config /etc/wegate/wegate.yaml --app ecard-callback --query 'msg_signature=…&timestamp=…&nonce=…&echostr=…'
 *   wegate wecom decrypt --token T --aes-key K --receive-id ww… --query '…' --body capture.xml
 *
 * Exit: 0 the request holds, 1 a check failed, 2 usage error, 78 the config is invalid.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatProblems, loadConfigFile } from '../config/load.ts';
import { EXIT_CONFIG } from '../core/errors.ts';
import {
  CallbackCryptoError,
  checkCallbackToken,
  checkEncodingAesKey,
  createCallbackCipher,
  createReceiveIdSet,
} from '../wecom/crypto/index.ts';
import { createSafeXml, parseCallbackQuery, readCallbackSecret, receiveIdsOf } from '../wecom/callback/index.ts';

export const DECRYPT_USAGE = `wegate wecom decrypt — check and decrypt a captured WeCom callback request (检查并解密抓取的企业微信回调请求)

Usage / 用法:
  wegate wecom decrypt --config FILE --app NAME --query QUERY [--body FILE|-]
  wegate wecom decrypt --token T --aes-key K [--receive-id ID ...] --query QUERY [--body FILE|-]

  --app NAME        a wecom.callbacks entry of the config (its Token, key and receiveids)
  --query QUERY     'msg_signature=…&timestamp=…&nonce=…[&echostr=…]' as captured (URL-encoded)
  --body FILE|-     the POST body (<xml>…<Encrypt>…</Encrypt></xml>), "-" for stdin
  --receive-id ID   an accepted receiveid (repeatable); without one the id found is shown, not checked

Exit codes: 0 the request holds (请求有效), 1 a check failed (校验失败), 2 usage error, 78 invalid configuration.
`;

export interface DecryptIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  out(text: string): void;
  err(text: string): void;
  readStdin(): Promise<string>;
}

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/** The reason of a crypto failure, one line naming the check. */
const REASONS: Record<CallbackCryptoError['code'], string> = {
  WG_CALLBACK_BAD_SIGNATURE: 'bad signature (签名错误)',
  WG_CALLBACK_BAD_ENCODING: 'bad encoding (编码错误)',
  WG_CALLBACK_BAD_LENGTH: 'bad length (长度错误)',
  WG_CALLBACK_BAD_PADDING: 'bad padding (填充错误，EncodingAESKey 是否正确？)',
  WG_CALLBACK_BAD_RECEIVE_ID: 'bad receiveid (receiveid 不符)',
};

/** Run the verb with its own arguments (after `wecom decrypt`); returns the exit code. */
export async function runWecomDecrypt(argv: readonly string[], io: DecryptIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        config: { type: 'string', short: 'c' },
        app: { type: 'string' },
        token: { type: 'string' },
        'aes-key': { type: 'string' },
        'receive-id': { type: 'string', multiple: true },
        query: { type: 'string' },
        body: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }));
  } catch (e) {
    io.err(`wegate wecom decrypt: ${(e as Error).message}\n\n${DECRYPT_USAGE}`);
    return EXIT_USAGE;
  }
  if (values.help) {
    io.out(DECRYPT_USAGE);
    return EXIT_OK;
  }
  const usage = (m: string) => {
    io.err(`wegate wecom decrypt: ${m}\n\n${DECRYPT_USAGE}`);
    return EXIT_USAGE;
  };
  if (values.query === undefined) return usage('--query is required');
  const fromConfig = values.config !== undefined || values.app !== undefined;
  const direct = values.token !== undefined || values['aes-key'] !== undefined;
  if (fromConfig === direct) return usage('give either --config FILE --app NAME, or --token and --aes-key');

  let token: string;
  let aesKey: string;
  let receiveIds: string[] | undefined;
  if (fromConfig) {
    if (values.config === undefined || values.app === undefined) return usage('--config and --app go together');
    const file = resolve(values.config);
    const r = await loadConfigFile(file);
    if (!r.ok) {
      io.err(`${formatProblems(file, r.problems)}\n`);
      return EXIT_CONFIG;
    }
    const wecom = r.config.wecom;
    const cb = wecom?.callbacks.find((c) => c.name === values.app);
    if (wecom === undefined || cb === undefined) {
      const names = wecom?.callbacks.map((c) => c.name).join(', ') || 'none';
      io.err(`wegate wecom decrypt: no wecom.callbacks entry named ${JSON.stringify(values.app)} in ${file} (defined: ${names})\n`);
      return EXIT_CONFIG;
    }
    try {
      token = readCallbackSecret('token', cb.token, io.env, checkCallbackToken);
      aesKey = readCallbackSecret('encoding_aes_key', cb.encoding_aes_key, io.env, checkEncodingAesKey);
    } catch (e) {
      io.err(`wegate wecom decrypt: ${(e as Error).message}\n`);
      return EXIT_CONFIG;
    }
    receiveIds = [...receiveIdsOf(cb, wecom), ...(values['receive-id'] ?? [])];
  } else {
    if (values.token === undefined || values['aes-key'] === undefined) return usage('--token and --aes-key go together');
    token = values.token;
    aesKey = values['aes-key'];
    const problem = checkCallbackToken(token) ?? checkEncodingAesKey(aesKey);
    if (problem !== undefined) return usage(`${checkCallbackToken(token) !== undefined ? '--token' : '--aes-key'} ${problem}`);
    receiveIds = values['receive-id'];
  }

  const fail = (reason: string) => {
    io.err(`${reason}\n`);
    return EXIT_FAILED;
  };
  const q = parseCallbackQuery(values.query.startsWith('?') ? values.query : `?${values.query}`);
  if (!q.ok) return fail(`bad query (查询参数错误): ${q.reason}`);
  const { msgSignature, timestamp, nonce, echostr } = q.query;
  let ciphertext: string;
  let kind: string;
  if (values.body !== undefined) {
    let body: string;
    try {
      body = values.body === '-' ? await io.readStdin() : await readFile(values.body, 'utf8');
    } catch (e) {
      return fail(`cannot read the body ${values.body} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const outer = createSafeXml().parse(body.trim());
    if (!outer.ok) return fail(`bad body (请求体错误): ${outer.reason}`);
    const enc = outer.fields['Encrypt'];
    if (typeof enc !== 'string' || enc === '') return fail('bad body (请求体错误): no <Encrypt> element');
    ciphertext = enc;
    kind = 'POST';
  } else {
    if (echostr === undefined) return fail('bad query (查询参数错误): no echostr, and no --body for a POST');
    ciphertext = echostr;
    kind = 'URL check (GET)';
  }

  const cipher = createCallbackCipher({ token, encodingAesKey: aesKey });
  if (!cipher.verify(msgSignature, timestamp, nonce, ciphertext)) {
    return fail(
      `${REASONS.WG_CALLBACK_BAD_SIGNATURE}: msg_signature does not match this Token over timestamp, nonce and the ciphertext (wrong Token, or the query decoded twice: "+" turned into a space?)`,
    );
  }
  try {
    const d = cipher.decrypt(ciphertext);
    if (receiveIds !== undefined && receiveIds.length > 0 && !createReceiveIdSet(receiveIds).has(d.receiveId)) {
      return fail(
        `${REASONS.WG_CALLBACK_BAD_RECEIVE_ID}: the message is for ${JSON.stringify(d.receiveId)}, accepted: ${receiveIds.map((i) => JSON.stringify(i)).join(', ')}`,
      );
    }
    const checked = receiveIds !== undefined && receiveIds.length > 0 ? 'accepted' : 'not checked';
    io.out(`${kind}: signature ok (签名正确), receiveid ${JSON.stringify(d.receiveId)} ${checked}\n${d.message}\n`);
    return EXIT_OK;
  } catch (e) {
    if (e instanceof CallbackCryptoError) return fail(`${REASONS[e.code]}: ${e.message}`);
    throw e;
  }
}
