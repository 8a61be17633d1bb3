/**
 * A strict parser for the Prometheus text exposition format 0.0.4 (what Prometheus scrapes from
 * /metrics), for tests. It throws on anything a Prometheus server would reject or silently
 * misread, rather than matching lines with regular expressions:
 * - metric and label names, label-value escapes (only \\ \" \n), float values (+Inf, -Inf, NaN in any case),
 *   optional integer timestamps;
 * - at most one HELP and one TYPE per family, TYPE before the family's first sample, every
 *   family's lines contiguous, sample names that belong to their family's type (`_bucket`/`_sum`/
 *   `_count` for histograms, `quantile` for summaries, no `le`/`quantile` elsewhere);
 * - no duplicate series, no duplicate label names, the trailing newline;
 * - histograms: every series has an `le="+Inf"` bucket, buckets are cumulative (non-decreasing
 *   with `le`), the +Inf bucket equals `_count`, `_sum` and `_count` present.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  /** Full sample name, e.g. `wegate_http_request_duration_seconds_bucket`. */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestamp?: number;
}

export interface Family {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string | undefined;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const TYPES = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export class ExpositionError extends Error {
  constructor(lineNo: number, line: string, reason: string) {
    super(`line ${lineNo}: ${reason}: ${JSON.stringify(line)}`);
    this.name = 'ExpositionError';
  }
}

/**
 * Prometheus reads values with Go's strconv.ParseFloat, which takes NaN, Inf and Infinity in any
 * case (prom-client writes "Nan" for a gauge without samples yet).
 */
function parseValue(text: string): number | undefined {
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (special) {
    if ((special[2] as string).toLowerCase() === 'nan') return special[1] === '' ? Number.NaN : undefined;
    return special[1] === '-' ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  return FLOAT.test(text) ? Number(text) : undefined;
}

/** Parse `{a="x",b="y"}` starting at `line[start] === '{'`; returns labels and the index after `}`. */
function parseLabels(line: string, start: number, fail: (reason: string) => never): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = Object.create(null);
  let i = start + 1;
  for (;;) {
    if (line[i] === '}') return { labels, end: i + 1 };
    const eq = line.indexOf('=', i);
    if (eq === -1) fail('label without "="');
    const name = line.slice(i, eq);
    if (!LABEL_NAME.test(name)) fail(`invalid label name ${JSON.stringify(name)}`);
    if (name.startsWith('__')) fail(`reserved label name ${name}`);
    if (name in labels) fail(`duplicate label ${name}`);
    if (line[eq + 1] !== '"') fail('label value must be quoted');
    let value = '';
    let j = eq + 2;
    for (;;) {
      const c = line[j];
      if (c === undefined) fail('unterminated label value');
      if (c === '"') break;
      if (c === '\\') {
        const n = line[j + 1];
        if (n === '\\') value += '\\';
        else if (n === '"') value += '"';
        else if (n === 'n') value += '\n';
        else fail(`invalid escape \\${n ?? ''} in label value`);
        j += 2;
        continue;
      }
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    if (line[i] === ',') i++;
    else if (line[i] !== '}') fail('expected "," or "}" after a label value');
  }
}

/** The family a sample name belongs to, given the families declared so far. */
function familyOf(name: string, families: Map<string, Family>): string {
  if (families.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const f = families.get(base);
      if (f && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return base;
    }
  }
  return name;
}

const seriesKey = (name: string, labels: Readonly<Record<string, string>>) =>
  `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',')}}`;

/** Parse a whole /metrics body; throws ExpositionError on the first violation. */
export function parseExposition(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith('\n')) throw new ExpositionError(0, text.slice(-40), 'exposition must end with a newline');
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  const series = new Set<string>();
  /** Families whose TYPE line was seen. */
  const typeTold = new Set<string>();
  let current: string | undefined;
  const lines = text.split('\n');
  lines.pop();

  const enter = (name: string, fail: (reason: string) => never) => {
    if (current === name) return;
    if (closed.has(name)) fail(`lines of family ${name} are not contiguous`);
    if (current !== undefined) closed.add(current);
    current = name;
  };

  lines.forEach((line, idx) => {
    const lineNo = idx + 1;
    const fail: (reason: string) => never = (reason) => {
      throw new ExpositionError(lineNo, line, reason);
    };
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (m === null) return; // a plain comment
      const [, kind, name, rest = ''] = m as unknown as [string, 'HELP' | 'TYPE', string, string | undefined];
      if (!METRIC_NAME.test(name)) fail(`invalid metric name ${name}`);
      enter(name, fail);
      const prev = families.get(name);
      if (kind === 'HELP') {
        if (prev?.help !== undefined) fail(`second HELP for ${name}`);
        if (/\\(?![\\n])/.test(rest)) fail('invalid escape in HELP text');
        const help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
        families.set(name, { name, type: prev?.type ?? 'untyped', help, samples: prev?.samples ?? [] });
        return;
      }
      const type = rest.trim() as MetricType;
      if (!TYPES.has(type)) fail(`unknown type ${JSON.stringify(rest)}`);
      if (prev !== undefined && (prev.samples.length > 0 || typeTold.has(name))) fail(`TYPE for ${name} after its samples or twice`);
      typeTold.add(name);
      families.set(name, { name, type, help: prev?.help, samples: prev?.samples ?? [] });
      return;
    }
    // A sample line.
    const nameEnd = line.search(/[{ \t]/);
    if (nameEnd <= 0) fail('sample without a value');
    const name = line.slice(0, nameEnd);
    if (!METRIC_NAME.test(name)) fail(`invalid metric name ${name}`);
    let labels: Record<string, string> = Object.create(null);
    let i = nameEnd;
    if (line[i] === '{') ({ labels, end: i } = parseLabels(line, i, fail));
    if (line[i] !== ' ' && line[i] !== '\t') fail('expected whitespace before the value');
    const fields = line
      .slice(i)
      .trim()
      .split(/[ \t]+/);
    if (fields.length < 1 || fields.length > 2) fail('expected a value and an optional timestamp');
    const value = parseValue(fields[0] as string);
    if (value === undefined) fail(`invalid value ${JSON.stringify(fields[0])}`);
    let timestamp: number | undefined;
    if (fields.length === 2) {
      if (!/^-?[0-9]+$/.test(fields[1] as string)) fail('invalid timestamp');
      timestamp = Number(fields[1]);
    }
    const fam = familyOf(name, families);
    enter(fam, fail);
    let f = families.get(fam);
    if (f === undefined) {
      f = { name: fam, type: 'untyped', help: undefined, samples: [] };
      families.set(fam, f);
    }
    const suffix = name.slice(fam.length);
    if (f.type === 'histogram') {
      if (suffix === '_bucket') {
        if (labels.le === undefined || parseValue(labels.le) === undefined) fail('histogram bucket without a valid le');
      } else if (suffix !== '_sum' && suffix !== '_count') fail(`histogram sample ${name} is not _bucket, _sum or _count`);
      else if ('le' in labels) fail('le on a histogram _sum/_count');
    } else if (f.type === 'summary') {
      if (suffix === '') {
        if (labels.quantile === undefined || parseValue(labels.quantile) === undefined) fail('summary sample without quantile');
      } else if ('quantile' in labels) fail('quantile on a summary _sum/_count');
    } else {
      if ('le' in labels || 'quantile' in labels) fail(`le/quantile label on a ${f.type}`);
      if (f.type === 'counter' && (value < 0 || Number.isNaN(value))) fail('counter with a negative or NaN value');
    }
    const key = seriesKey(name, labels);
    if (series.has(key)) fail(`duplicate series ${key}`);
    series.add(key);
    f.samples.push(timestamp === undefined ? { name, labels, value } : { name, labels, value, timestamp });
  });

  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = seriesKey('', rest);
    let g = groups.get(key);
    if (g === undefined) {
      g = { buckets: [] };
      groups.set(key, g);
    }
    if (s.name.endsWith('_bucket')) g.buckets.push([parseValue(le as string) as number, s.value]);
    else if (s.name.endsWith('_sum')) g.sum = s.value;
    else g.count = s.value;
  }
  for (const [key, g] of groups) {
    const where = `${f.name}${key}`;
    if (g.sum === undefined || g.count === undefined) throw new Error(`${where}: histogram without _sum or _count`);
    const sorted = [...g.buckets].sort((a, b) => a[0] - b[0]);
    const inf = sorted.at(-1);
    if (inf === undefined || inf[0] !== Number.POSITIVE_INFINITY) throw new Error(`${where}: histogram without an le="+Inf" bucket`);
    for (let i = 1; i < sorted.length; i++) {
      if ((sorted[i] as [number, number])[1] < (sorted[i - 1] as [number, number])[1]) throw new Error(`${where}: buckets not cumulative`);
    }
    if (inf[1] !== g.count) throw new Error(`${where}: +Inf bucket ${inf[1]} differs from _count ${g.count}`);
  }
}

/** The samples of `family` whose name is exactly `name` (default: the family name). */
export function samplesOf(families: Map<string, Family>, family: string, name = family): Sample[] {
  const f = families.get(family);
  if (f === undefined) throw new Error(`metric family ${family} is missing`);
  return f.samples.filter((s) => s.name === name);
}

/** The value of the one series of `name` whose labels include `labels`, or undefined. */
export function valueOf(families: Map<string, Family>, family: string, labels: Record<string, string>, name = family): number | undefined {
  const hits = samplesOf(families, family, name).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${name}: ${hits.length} series match ${JSON.stringify(labels)}`);
  return hits[0]?.value;
}
