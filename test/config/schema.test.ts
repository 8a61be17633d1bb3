import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import t from 'tap';
import { parse } from 'yaml';
import { editorJsonSchema } from '../../src/config/load.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCHEMA_FILE = join(ROOT, 'config', 'wegate.schema.json');
const EXAMPLE = join(ROOT, 'config', 'wegate.example.yaml');

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every property name in the schema with its dotted path, following nested objects, lists and unions. */
function schemaKeys(node: unknown, prefix = ''): { key: string; path: string }[] {
  if (!isObj(node)) return [];
  const out: { key: string; path: string }[] = [];
  if (isObj(node['properties'])) {
    for (const [key, sub] of Object.entries(node['properties'])) {
      const path = prefix === '' ? key : `${prefix}.${key}`;
      out.push({ key, path }, ...schemaKeys(sub, path));
    }
  }
  if (isObj(node['items'])) out.push(...schemaKeys(node['items'], `${prefix}[]`));
  // Maps keyed by names the user chooses (egress profiles): the keys of their values.
  if (isObj(node['patternProperties'])) for (const sub of Object.values(node['patternProperties'])) out.push(...schemaKeys(sub, `${prefix}.*`));
  for (const union of [node['anyOf'], node['oneOf']]) {
    if (Array.isArray(union)) for (const b of union) out.push(...schemaKeys(b, prefix));
  }
  return out;
}

t.test('config/wegate.schema.json: matches editorJsonSchema() when the schema changed', async (t) => {
  const expected = `${JSON.stringify(editorJsonSchema(), null, 2)}\n`;
  const committed = readFileSync(SCHEMA_FILE, 'utf8');
  t.ok(committed === expected, 'config/wegate.schema.json is stale: regenerate it with `npm run schema` and commit the result');
});

t.test('editorJsonSchema: leaves keys with a default out of `required` when editors check a file', async (t) => {
  const schema = editorJsonSchema() as Obj;
  t.equal(schema['$schema'], 'http://json-schema.org/draft-07/schema#');
  t.same(schema['required'], ['routes'], 'only routes must be written at the top level');
  const walk = (node: unknown, at: string): void => {
    if (Array.isArray(node)) {
      for (const [i, n] of node.entries()) walk(n, `${at}[${i}]`);
      return;
    }
    if (!isObj(node)) return;
    t.notOk('x-path' in node, `${at}: no internal annotation`);
    const props = node['properties'];
    if (isObj(props) && Array.isArray(node['required'])) {
      for (const k of node['required'] as string[])
        t.notOk(isObj(props[k]) && 'default' in props[k], `${at}.${k} has a default yet is required`);
    }
    for (const [k, v] of Object.entries(node)) walk(v, `${at}.${k}`);
  };
  walk(schema, '#');
  const route = ((schema['properties'] as Obj)['routes'] as Obj)['items'] as Obj;
  t.same(route['required'], ['upstream']);
});

t.test('editorJsonSchema: accepts the example config and rejects a typo when used by a standard validator', async (t) => {
  // A plain draft-07 validator, as an editor would use it (the annotation keyword is unknown to it).
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(editorJsonSchema());
  const example = parse(readFileSync(EXAMPLE, 'utf8')) as unknown;
  t.ok(validate(example), JSON.stringify(validate.errors));
  t.notOk(validate({ listen: { http: ':8080' }, routes: [{ upsteam: 'https://a' }] }));
});

t.test('config/wegate.example.yaml: documents every schema key when the schema grows', async (t) => {
  const text = readFileSync(EXAMPLE, 'utf8');
  const keys = schemaKeys(editorJsonSchema());
  t.ok(keys.length > 40, `found ${keys.length} keys`);
  for (const { key, path } of keys) {
    // As a YAML key, possibly commented out or as a list item's first key.
    t.match(text, new RegExp(`^[ \\t#-]*${key}:( |$)`, 'm'), `${path}: \`${key}:\` appears in the example`);
  }
});

t.test('config/wegate.example.yaml: explains each key in English and Chinese when it is documented', async (t) => {
  const lines = readFileSync(EXAMPLE, 'utf8').split('\n');
  const isKeyLine = (l: string) => /^[ \t]*(#[ \t]*)?(-[ \t]*)?[a-z_]+:( |$)/.test(l);
  const isDocLine = (l: string) => /^[ \t]*(-[ \t]*)?#/.test(l) && !isKeyLine(l);
  const cjk = /[\u4e00-\u9fff]/;
  const english = /[A-Za-z]{2,} [A-Za-z]{2,}/;
  for (const { key, path } of schemaKeys(editorJsonSchema())) {
    const documented = lines.some((line, i) => {
      if (!new RegExp(`^[ \\t#-]*${key}:( |$)`).test(line)) return false;
      // The comment block above the key, skipping up to three sibling key lines (e.g. `cert:` under `certs:`).
      let j = i - 1;
      for (let skipped = 0; j >= 0 && skipped < 3 && isKeyLine(lines[j] as string); skipped++) j--;
      const block: string[] = [];
      for (; j >= 0 && isDocLine(lines[j] as string); j--) block.push(lines[j] as string);
      return block.some((l) => cjk.test(l)) && block.some((l) => english.test(l.replace(cjk, '')));
    });
    t.ok(documented, `${path}: has an English and a 简体中文 comment above it`);
  }
});
