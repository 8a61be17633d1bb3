/**
 * One bilingual sentence for a WeCom client error, for doctor, /diagnostics and the readiness probe:
 * the 60020 diagnosis or the credential advice when there is one (they name the console step),
 * otherwise the error-table text with the client's own safe message (it never holds a secret).
 */
import { ERRORS } from '../core/errors.ts';
import type { WecomApiError } from '../wecom/api/index.ts';

export interface Sentence {
  readonly en: string;
  readonly zh: string;
}

export function explainWecomError(e: WecomApiError): Sentence {
  if (e.diagnosis) return { en: e.diagnosis.en, zh: e.diagnosis.zh };
  if (e.advice) return { en: e.advice.en, zh: e.advice.zh };
  return { en: e.message, zh: `${ERRORS[e.code].zh}（${e.message}）` };
}
