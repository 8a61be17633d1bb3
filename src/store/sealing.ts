/**
 * Secrets at rest: the permanent code of a 代开发 / third-party authorisation IS that app's secret,
 * so the store keeps it sealed with AES-256-GCM under a key read from a file. A copy of the database
 * alone (a backup, a support bundle) then reveals nothing; the row's identity is the associated data,
 * so a sealed value cannot be moved to another (suite, corp).
 *
 * Key file: 32 random bytes, written as 64 hex characters or 44 base64 characters (one line), or
 * the 32 raw bytes. With no `state.key_file` configured the store creates `<state.dir>/state.key`
 * (mode 0600) on first start; that protects a copied database, not a copied directory.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync, fsyncSync } from 'node:fs';

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface Sealer {
  seal(plaintext: string, aad: string): Buffer;
  /** Throws when the key, the associated data or the bytes do not match. */
  open(sealed: Uint8Array, aad: string): string;
}

export function createSealer(key: KeyObject, randomBytes: (n: number) => Buffer): Sealer {
  return {
    seal(plaintext, aad) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(aad, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return Buffer.concat([Buffer.of(VERSION), iv, cipher.getAuthTag(), body]);
    },
    open(sealed, aad) {
      const b = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
      if (b.length < 1 + IV_BYTES + TAG_BYTES || b[0] !== VERSION) throw new Error('sealed value has an unknown format');
      const decipher = createDecipheriv('aes-256-gcm', key, b.subarray(1, 1 + IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(aad, 'utf8'));
      decipher.setAuthTag(b.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(b.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    },
  };
}

/** Parse a key file's bytes: 64 hex, 44 base64 (43 + "=") or 32 raw bytes. Throws naming the file, never the content. */
export function parseKeyFile(bytes: Buffer, file: string): KeyObject {
  const text = bytes.toString('latin1').trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, 'hex');
  else if (/^[A-Za-z0-9+/]{43}=$/.test(text)) key = Buffer.from(text, 'base64');
  else if (bytes.length === 32) key = bytes;
  if (key?.length !== 32) {
    throw new Error(
      `state key file ${file} must hold 32 random bytes (64 hex or 44 base64 characters, e.g. \`openssl rand -hex 32\`), got ${bytes.length} bytes (content hidden)` +
        ` / 状态存储密钥文件 ${file} 须为 32 字节随机数（64 个十六进制或 44 个 base64 字符，如 \`openssl rand -hex 32\`），实际为 ${bytes.length} 字节（内容已隐藏）`,
    );
  }
  return createSecretKey(key);
}

/** Read the key file; with `create`, make it (0600, exclusive, fsync'd) when it does not exist. */
export function loadKeyFile(file: string, create: boolean, randomBytes: (n: number) => Buffer): { key: KeyObject; created: boolean } {
  try {
    return { key: parseKeyFile(readFileSync(file), file), created: false };
  } catch (err) {
    if (!create || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const hex = `${randomBytes(32).toString('hex')}\n`;
  const fd = openSync(file, 'wx', 0o600);
  try {
    writeSync(fd, hex);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { key: parseKeyFile(Buffer.from(hex), file), created: true };
}
