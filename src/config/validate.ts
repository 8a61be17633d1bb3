/**
 * The generic half of config loading, independent of wegate's keys: YAML with line numbers →
 * Ajv (allErrors, useDefaults) → file paths resolved and checked → caller's semantic checks, every
 * problem rewritten as one plain sentence with its key path and YAML line. Values of keys named in
 * SECRET_KEYS are never echoed, only their length; secret query parameters and URL userinfo inside
 * any other shown value are redacted (core/logger's redactValue, the access log's list of names).
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { type Document, isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Node as YamlNode } from 'yaml';
import { redactValue } from '../core/logger.ts';
import { SECRET_KEYS } from './schema.ts';

/** One problem in a config file: key path ("routes[2].upstream"), YAML line, plain-sentence reason. */
export interface ConfigProblem {
  readonly path: string;
  readonly line?: number;
  readonly message: string;
}

/** A key path as segments: map keys are strings, list indexes numbers. */
export type Segment = string | number;
export type KeyPath = readonly Segment[];

/** What semantic checks get: report problems against key paths, show values safely. */
export interface CheckContext {
  /** The config file name as given (for messages). */
  readonly file: string;
  /** Absolute directory relative paths are resolved against. */
  readonly baseDir: string;
  /** Record a problem at `at`; `message` is a sentence like "must …, got …". */
  report(at: KeyPath, message: string): void;
  /** True when a problem was already reported at `at`, below it or above it (skip dependent checks). */
  failed(at: KeyPath): boolean;
  /** A value for a message: quoted and shortened to `maxLength`, or "(value hidden, N characters)" for secret keys. */
  show(at: KeyPath, value: unknown, maxLength?: number): string;
  /** The YAML line of the key at `at` (or of its nearest ancestor present in the file). */
  lineOf(at: KeyPath): number | undefined;
}

export type ValidationResult = { ok: true; value: unknown } | { ok: false; problems: ConfigProblem[] };

/** Semantic checks run after the schema; `data` may be partly invalid, so guard every access. */
export type SemanticCheck = (data: unknown, ctx: CheckContext) => void;

interface RawProblem {
  readonly at: KeyPath;
  readonly message: string;
  /** Set when the line is known directly (YAML syntax errors), not looked up from the path. */
  readonly line?: number;
  /** Shown instead of the formatted key path (YAML syntax errors have none). */
  readonly label?: string;
}

type JsonObject = Record<string, unknown>;

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

// --- Ajv ---------------------------------------------------------------------------------------

const validators = new WeakMap<object, ValidateFunction>();

/** Compile lazily (nothing at import time) and once per schema object. */
function validatorFor(schema: TSchema): ValidateFunction {
  let v = validators.get(schema);
  if (!v) {
    const ajv = new Ajv({
      allErrors: true,
      // YAML `key:` with nothing after it is null: treat it as "not set" so the default applies.
      useDefaults: 'empty',
      verbose: true,
      strict: true,
      keywords: [
        { keyword: 'patternErrorMessage', schemaType: 'string' },
        { keyword: 'x-path', schemaType: 'string' },
      ],
    });
    v = ajv.compile(schema);
    validators.set(schema, v);
  }
  return v;
}

/** JSON Pointer → segments; indexes become numbers where the data holds a list. */
function pointerToPath(pointer: string, root: unknown): Segment[] {
  if (pointer === '') return [];
  const out: Segment[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node) && /^\d+$/.test(key)) {
      out.push(Number(key));
      node = node[Number(key)];
    } else {
      out.push(key);
      node = isObject(node) ? node[key] : undefined;
    }
  }
  return out;
}

function jsonType(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function typeMatches(schemaType: unknown, v: unknown): boolean {
  if (schemaType === undefined) return true;
  const types = Array.isArray(schemaType) ? schemaType : [schemaType];
  const t = jsonType(v);
  return types.some((s) => s === t || (s === 'integer' && t === 'number' && Number.isInteger(v)));
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  integer: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
  null: 'empty',
};

function typeName(t: unknown): string {
  const types = Array.isArray(t) ? t : [t];
  return types.map((x) => TYPE_NAMES[String(x)] ?? String(x)).join(' or ');
}

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** Is the value at `at` a secret? Matched on the last key name, as SECRET_KEYS documents. */
function isSecretPath(at: KeyPath): boolean {
  for (let i = at.length - 1; i >= 0; i--) {
    const seg = at[i];
    if (typeof seg === 'string') return SECRET_KEYS.has(seg.toLowerCase());
  }
  return false;
}

/** A value for a message. Secrets by length only; mappings and lists by kind, never their content. */
export function showValue(at: KeyPath, value: unknown, maxLength = 80): string {
  if (isSecretPath(at)) {
    return typeof value === 'string' ? `(value hidden, ${plural(value.length, 'character', 'characters')})` : '(value hidden)';
  }
  if (value === null || value === undefined) return 'nothing (the value is empty)';
  if (typeof value === 'string') {
    // Redacted before it is shortened, so a cut cannot leave part of a secret behind.
    const v = redactValue(value);
    return JSON.stringify(v.length > maxLength ? `${v.slice(0, maxLength - 3)}...` : v);
  }
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return 'a list';
  return 'a mapping';
}

const quoteKey = (k: string) => `\`${k.length > 40 ? `${k.slice(0, 37)}...` : k}\``;

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      let v = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, ((d[i - 2] as number[])[j - 2] as number) + 1);
      row[j] = v;
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

/** The closest candidate to `word` if it is a plausible typo ("upsteam" → "upstream", "stripPrefix" → "strip_prefix"). */
export function suggest(word: string, candidates: Iterable<string>): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[-_\s]/g, '');
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = squash(c) === squash(word) ? 0 : distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  return best !== undefined && bestD <= limit ? best : undefined;
}

/** Ajv errors → plain sentences. anyOf/oneOf branch noise is collapsed into one sentence per value. */
function rewriteAjvErrors(errors: readonly ErrorObject[], root: unknown): RawProblem[] {
  const dropped = new Set<ErrorObject>();
  const replaced = new Map<ErrorObject, string>();
  const unions = errors
    .filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf')
    .sort((a, b) => a.schemaPath.length - b.schemaPath.length);
  for (const u of unions) {
    if (dropped.has(u)) continue;
    const branches = Array.isArray(u.schema) ? (u.schema as unknown[]) : [];
    const prefix = `${u.schemaPath}/`;
    const inner = errors.filter((e) => e !== u && e.schemaPath.startsWith(prefix));
    const consts = branches.every((b) => isObject(b) && 'const' in b) ? branches.map((b) => (b as JsonObject)['const']) : undefined;
    if (consts) {
      for (const e of inner) dropped.add(e);
      replaced.set(u, enumMessage(pointerToPath(u.instancePath, root), consts, u.data));
      continue;
    }
    const fitting = branches.map((b, i) => (isObject(b) && typeMatches(b['type'], u.data) ? i : -1)).filter((i) => i >= 0);
    if (fitting.length === 1) {
      // Only one form accepts this kind of value: its own errors say what is wrong.
      const keep = `${prefix}${fitting[0]}/`;
      for (const e of inner) if (!e.schemaPath.startsWith(keep)) dropped.add(e);
      dropped.add(u);
    } else {
      for (const e of inner) dropped.add(e);
      const kinds = [...new Set(branches.map((b) => (isObject(b) ? typeName(b['type']) : 'a value')))];
      replaced.set(
        u,
        u.keyword === 'oneOf' && fitting.length > 1
          ? `must match exactly one of the allowed forms (${kinds.join(', ')})`
          : `must be ${kinds.join(' or ')}, got ${showValue(pointerToPath(u.instancePath, root), u.data)}`,
      );
    }
  }

  const problems: RawProblem[] = [];
  // A typo'd key shows up twice in Ajv's output (unknown `upsteam`, missing `upstream`): say it once.
  const suggested = new Set<string>();
  for (const e of errors) {
    if (dropped.has(e) || e.keyword !== 'additionalProperties') continue;
    const props = isObject(e.parentSchema) && isObject(e.parentSchema['properties']) ? Object.keys(e.parentSchema['properties']) : [];
    const unknown = String((e.params as { additionalProperty?: unknown }).additionalProperty);
    const hint = suggest(unknown, props);
    const at = [...pointerToPath(e.instancePath, root), unknown];
    if (hint !== undefined) suggested.add(`${e.instancePath}/${hint}`);
    problems.push({
      at,
      message:
        hint !== undefined
          ? `unknown key ${quoteKey(unknown)}, did you mean ${quoteKey(hint)}?`
          : `unknown key ${quoteKey(unknown)} (allowed here: ${props.join(', ')})`,
    });
  }
  for (const e of errors) {
    if (dropped.has(e) || e.keyword === 'additionalProperties') continue;
    const at = pointerToPath(e.instancePath, root);
    const r = replaced.get(e);
    if (r !== undefined) {
      problems.push({ at, message: r });
      continue;
    }
    if (e.keyword === 'required') {
      const missing = String((e.params as { missingProperty?: unknown }).missingProperty);
      if (suggested.has(`${e.instancePath}/${missing}`)) continue;
      problems.push({ at: [...at, missing], message: 'must be set (this key is required)' });
      continue;
    }
    problems.push({ at, message: keywordMessage(e, at) });
  }
  return problems;
}

function enumMessage(at: KeyPath, allowed: readonly unknown[], data: unknown): string {
  const list = allowed.map((a) => JSON.stringify(a)).join(', ');
  const hint = typeof data === 'string' && !isSecretPath(at) ? suggest(data, allowed.map(String)) : undefined;
  return `must be one of ${list}, got ${showValue(at, data)}${hint !== undefined ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}`;
}

function keywordMessage(e: ErrorObject, at: KeyPath): string {
  const p = e.params as Record<string, unknown>;
  const ps = isObject(e.parentSchema) ? e.parentSchema : {};
  const got = showValue(at, e.data);
  const hidden = isSecretPath(at);
  const len = typeof e.data === 'string' ? e.data.length : Array.isArray(e.data) ? e.data.length : 0;
  switch (e.keyword) {
    case 'type': {
      const pem = ps['patternErrorMessage'];
      if (p['type'] === 'string' && typeof pem === 'string' && e.data !== null && typeof e.data !== 'object') return `${pem}, got ${got}`;
      return `must be ${typeName(p['type'])}, got ${got}`;
    }
    case 'enum':
      return enumMessage(at, Array.isArray(p['allowedValues']) ? p['allowedValues'] : [], e.data);
    case 'const':
      return `must be ${JSON.stringify(p['allowedValue'])}, got ${got}`;
    case 'pattern': {
      const pem = ps['patternErrorMessage'];
      return `${typeof pem === 'string' ? pem : `must match the pattern ${String(p['pattern'])}`}, got ${got}`;
    }
    case 'minimum':
    case 'exclusiveMinimum':
      return `must be ${e.keyword === 'minimum' ? 'at least' : 'more than'} ${String(p['limit'])}, got ${got}`;
    case 'maximum':
    case 'exclusiveMaximum':
      return `must be ${e.keyword === 'maximum' ? 'at most' : 'less than'} ${String(p['limit'])}, got ${got}`;
    case 'multipleOf':
      return `must be a multiple of ${String(p['multipleOf'])}, got ${got}`;
    case 'minLength': {
      const limit = Number(p['limit']);
      if (limit === 1) return 'must not be empty';
      return `must be at least ${plural(limit, 'character', 'characters')} long, got ${hidden ? got : plural(len, 'character', 'characters')}`;
    }
    case 'maxLength': {
      const limit = Number(p['limit']);
      return `must be at most ${plural(limit, 'character', 'characters')} long, got ${hidden ? got : plural(len, 'character', 'characters')}`;
    }
    case 'minItems':
      return `must have at least ${plural(Number(p['limit']), 'entry', 'entries')}, got ${len}`;
    case 'maxItems':
      return `must have at most ${plural(Number(p['limit']), 'entry', 'entries')}, got ${len}`;
    case 'uniqueItems':
      return `must not contain the same entry twice (entries ${String(p['j'])} and ${String(p['i'])} are equal)`;
    case 'format':
      return `must be a valid ${String(p['format'])}, got ${got}`;
    default:
      // A keyword this table does not know yet: Ajv's text is terse but never contains the value.
      return e.message ?? 'is not valid';
  }
}

// --- YAML --------------------------------------------------------------------------------------

interface Source {
  readonly doc: Document.Parsed;
  readonly lc: LineCounter;
}

function keyText(node: unknown): string | undefined {
  return isScalar(node) ? String(node.value) : undefined;
}

const lineAt = (src: Source, offset: number) => src.lc.linePos(offset).line;

/** The YAML line of the key (or list item) at `at`, else of its nearest ancestor in the file. */
function locate(src: Source, at: KeyPath): number | undefined {
  let node: unknown = src.doc.contents;
  let line = isYamlNode(node) && node.range ? lineAt(src, node.range[0]) : undefined;
  for (const seg of at) {
    if (isMap(node)) {
      // The last of duplicate keys wins in toJS(), so point at that one too.
      const pair = node.items.findLast((p) => keyText(p.key) === String(seg));
      if (!pair) break;
      if (isYamlNode(pair.key) && pair.key.range) line = lineAt(src, pair.key.range[0]);
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (!isYamlNode(item)) break;
      if (item.range) line = lineAt(src, item.range[0]);
      node = item;
    } else {
      break;
    }
  }
  return line;
}

function isYamlNode(v: unknown): v is YamlNode {
  return typeof v === 'object' && v !== null && 'range' in v;
}

/** Find the map key at `offset` (a duplicate key error): its path and the line of the first occurrence. */
function findDuplicateKey(src: Source, offset: number): { at: Segment[]; first: number | undefined } | undefined {
  const walk = (node: unknown, at: Segment[]): { at: Segment[]; first: number | undefined } | undefined => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const k = keyText(pair.key);
        if (k !== undefined && isYamlNode(pair.key) && pair.key.range?.[0] === offset) {
          const first = node.items.find((p) => keyText(p.key) === k);
          const firstLine = first && isYamlNode(first.key) && first.key.range ? lineAt(src, first.key.range[0]) : undefined;
          return { at: [...at, k], first: firstLine };
        }
        const found = walk(pair.value, k === undefined ? at : [...at, k]);
        if (found) return found;
      }
    } else if (isSeq(node)) {
      for (let i = 0; i < node.items.length; i++) {
        const found = walk(node.items[i], [...at, i]);
        if (found) return found;
      }
    }
    return undefined;
  };
  return walk(src.doc.contents, []);
}

/** The line of the first alias (`*name`) whose anchor is not defined before it. */
function unresolvedAliasLine(src: Source): number | undefined {
  let line: number | undefined;
  visit(src.doc, {
    Alias(_, node) {
      if (node.resolve(src.doc) === undefined && node.range) {
        line = lineAt(src, node.range[0]);
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return line;
}

// --- paths in the config ----------------------------------------------------------------------

type PathVisit = (kind: string, value: string, at: KeyPath, set: (v: string) => void) => void;

/** Visit every string the schema marks with `x-path`, following the data. */
function walkPaths(schema: unknown, data: unknown, at: Segment[], visit: PathVisit, set: (v: string) => void): void {
  if (!isObject(schema)) return;
  const kind = schema['x-path'];
  if (typeof kind === 'string' && typeof data === 'string') visit(kind, data, at, set);
  if (isObject(data) && isObject(schema['properties'])) {
    for (const [k, s] of Object.entries(schema['properties'])) {
      if (Object.hasOwn(data, k)) walkPaths(s, data[k], [...at, k], visit, (v) => (data[k] = v));
    }
  }
  if (isObject(data) && isObject(schema['patternProperties'])) {
    // Maps keyed by names the user chooses (egress profiles): every key matching a pattern.
    const named = isObject(schema['properties']) ? schema['properties'] : {};
    for (const [pattern, s] of Object.entries(schema['patternProperties'])) {
      const re = new RegExp(pattern, 'u');
      for (const k of Object.keys(data)) {
        if (!Object.hasOwn(named, k) && re.test(k)) walkPaths(s, data[k], [...at, k], visit, (v) => (data[k] = v));
      }
    }
  }
  if (Array.isArray(data) && isObject(schema['items'])) {
    for (let i = 0; i < data.length; i++) walkPaths(schema['items'], data[i], [...at, i], visit, (v) => (data[i] = v));
  }
  for (const union of [schema['anyOf'], schema['oneOf']]) {
    if (!Array.isArray(union)) continue;
    for (const b of union) if (isObject(b) && typeMatches(b['type'], data)) walkPaths(b, data, at, visit, set);
  }
}

function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'not found';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOTDIR') return 'a parent is not a directory';
  return code ?? 'cannot be read';
}

/** Resolve relative paths against the config's directory and check they are readable. */
function checkPaths(schema: TSchema, data: unknown, ctx: CheckContext): void {
  walkPaths(
    schema,
    data,
    [],
    (kind, value, at, set) => {
      if (value === '') return; // minLength already reported it
      const abs = isAbsolute(value) ? value : resolve(ctx.baseDir, value);
      set(abs);
      // File paths are shown whole: a shortened path does not say which file is meant.
      const shown = ctx.show(at, value, Number.POSITIVE_INFINITY);
      const where = abs === value ? shown : `${shown} (${abs})`;
      const what = kind === 'dir' ? 'a readable directory' : 'a readable file';
      try {
        const st = statSync(abs);
        if (kind === 'dir' ? !st.isDirectory() : !st.isFile()) {
          ctx.report(at, `must be ${what}, got ${where}: ${kind === 'dir' ? 'not a directory' : 'not a regular file'}`);
          return;
        }
        accessSync(abs, kind === 'dir' ? constants.R_OK | constants.X_OK : constants.R_OK);
      } catch (err) {
        ctx.report(at, `must be ${what}, got ${where}: ${fsReason(err)}`);
      }
    },
    () => {},
  );
}

// --- putting it together -----------------------------------------------------------------------

/** "routes[2].upstream"; keys that are not plain words are quoted: `a["x y"]`. */
export function formatKeyPath(at: KeyPath): string {
  if (at.length === 0) return '(root)';
  let out = '';
  for (const seg of at) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg.length > 40 ? `${seg.slice(0, 37)}...` : seg)}]`;
  }
  return out;
}

const isPrefix = (a: KeyPath, b: KeyPath) => a.length <= b.length && a.every((s, i) => s === b[i]);

/**
 * Parse YAML text, validate it against `schema` (defaults filled in place), resolve and check `x-path`
 * files, run `check`, and return the data or every problem found, sorted by line. Never throws for bad input.
 */
export function validateConfigText(text: string, file: string, schema: TSchema, check?: SemanticCheck): ValidationResult {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const src: Source = { doc, lc };
  const raw: RawProblem[] = [];

  let fatal = false;
  for (const err of doc.errors) {
    const line = lc.linePos(err.pos[0]).line;
    const dup = err.code === 'DUPLICATE_KEY' ? findDuplicateKey(src, err.pos[0]) : undefined;
    if (dup) {
      const first = dup.first !== undefined && dup.first !== line ? ` (first on line ${dup.first})` : '';
      raw.push({ at: dup.at, line, message: `must appear only once in its mapping, got it again${first}` });
    } else {
      fatal = true;
      raw.push({ at: [], label: '(yaml)', line, message: `invalid YAML: ${err.message}` });
    }
  }

  let data: unknown;
  if (!fatal) {
    try {
      data = doc.toJS({ maxAliasCount: 50 });
    } catch (err) {
      // Unresolved or excessive aliases; the message names an anchor at most, never a value.
      fatal = true;
      const line = unresolvedAliasLine(src);
      const message = `invalid YAML: ${(err as Error).message}`;
      raw.push(line === undefined ? { at: [], label: '(yaml)', message } : { at: [], label: '(yaml)', line, message });
    }
  }

  if (!fatal) {
    const validate = validatorFor(schema);
    if (!validate(data)) raw.push(...rewriteAjvErrors(validate.errors ?? [], data));
    const ctx: CheckContext = {
      file,
      baseDir: dirname(resolve(file)),
      report: (at, message) => raw.push({ at: [...at], message }),
      failed: (at) =>
        raw.some((p) => p.label === undefined && (isPrefix(at, p.at) || isPrefix(p.at, at)) && (p.at.length > 0 || at.length === 0)),
      show: showValue,
      lineOf: (at) => locate(src, at),
    };
    checkPaths(schema, data, ctx);
    check?.(data, ctx);
  }

  if (raw.length === 0) return { ok: true, value: data };
  const seen = new Set<string>();
  const problems: ConfigProblem[] = [];
  for (const p of raw) {
    const path = p.label ?? formatKeyPath(p.at);
    const line = p.line ?? (p.label === undefined ? locate(src, p.at) : undefined);
    // Every message once more: a check that quoted a value itself (JSON.stringify) must not leak
    // a corpsecret=… or user:password@ into `wegate check` output or the reload error log.
    const message = redactValue(p.message);
    const key = `${path}\0${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    problems.push(line === undefined ? { path, message } : { path, line, message });
  }
  // File order, then key path; problems without a line last.
  problems.sort(
    (a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
  );
  return { ok: false, problems };
}

/**
 * The YAML line of the key at `at` in `text` (or of its nearest ancestor): for problems found after
 * the file was loaded, such as a local address that is not on this host.
 */
export function lineInText(text: string, at: KeyPath): number | undefined {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  return locate({ doc, lc }, at);
}

/** "file is invalid (N problems):" followed by one indented line per problem. */
export function formatProblemList(file: string, problems: readonly ConfigProblem[]): string {
  const head = `${file} is invalid (${plural(problems.length, 'problem', 'problems')}):`;
  const lines = problems.map((p) => `  ${p.path}${p.line !== undefined ? ` (line ${p.line})` : ''}: ${p.message}`);
  return [head, ...lines].join('\n');
}
