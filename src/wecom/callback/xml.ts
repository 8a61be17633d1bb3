/**
 * Untrusted XML, parsed safely. The outer XML of a POST is parsed *before* its signature can be
 * checked (the ciphertext is inside it), so: anything with a markup declaration (`<!DOCTYPE`,
 * `<!ENTITY`, comments — anything `<!` but CDATA) is refused before parsing; fast-xml-parser runs
 * with entities off, values as strings (userid `007` stays `007`), attributes ignored and nesting
 * bounded; its throws (`__proto__` and other reserved names, deep nesting, bad markup) become a
 * refusal, never a crash.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';

/** WeCom's messages nest 3–4 levels (xml › SendPicsInfo › PicList › item › PicMd5Sum). */
const MAX_DEPTH = 16;
const DECLARATION_RE = /<!(?!\[CDATA\[)/;

export type XmlFields = { readonly [name: string]: string | XmlFields | readonly (string | XmlFields)[] };
export type XmlResult = { ok: true; fields: XmlFields } | { ok: false; reason: string };

export interface SafeXml {
  /** The children of the root `<xml>` element. */
  parse(text: string): XmlResult;
}

export function createSafeXml(): SafeXml {
  const parser = new XMLParser({
    ignoreAttributes: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
    processEntities: false,
    htmlEntities: false,
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: false,
    maxNestedTags: MAX_DEPTH,
    strictReservedNames: true,
  });
  return {
    parse(text: string): XmlResult {
      if (DECLARATION_RE.test(text)) return { ok: false, reason: 'XML with a DOCTYPE, ENTITY or other declaration' };
      let doc: unknown;
      try {
        // The parser is lenient about broken markup; the validator is not (and is as safe: no entities).
        const valid = XMLValidator.validate(text);
        if (valid !== true) return { ok: false, reason: 'malformed XML' };
        doc = parser.parse(text);
      } catch {
        return { ok: false, reason: 'XML refused by the parser (reserved name, nesting or markup)' };
      }
      const root = typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>)['xml'] : undefined;
      if (typeof root !== 'object' || root === null || Array.isArray(root)) return { ok: false, reason: 'no <xml> root element' };
      return { ok: true, fields: root as XmlFields };
    },
  };
}

/** A top-level text field, or undefined when absent or not text (a repeated or nested element). */
export function textField(fields: XmlFields, name: string): string | undefined {
  if (!Object.hasOwn(fields, name)) return undefined;
  const v = fields[name];
  return typeof v === 'string' ? v : undefined;
}
