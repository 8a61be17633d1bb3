/** Start-up errors of the state store (kept apart from sqlite.ts so importing them does not load node:sqlite). */
import { GatewayError } from '../core/errors.ts';

/** The store cannot be opened: the message names the file and says what to do, in English and 简体中文. */
export class StoreOpenError extends GatewayError {
  override readonly name = 'StoreOpenError';
  readonly file: string;
  constructor(file: string, en: string, zh: string, cause?: unknown) {
    super('WG_STORE_UNAVAILABLE', `state store ${file}: ${en} / 状态存储 ${file}：${zh}`, cause === undefined ? undefined : { cause });
    this.file = file;
  }
}
