import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import t from 'tap';
import { ERRORS } from '../../src/core/errors.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';

const readme = () => readFile(join(import.meta.dirname, '../../README.md'), 'utf8');

t.test('README: lists every error code with its status when the error table changes', async (t) => {
  const text = await readme();
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.match(text, `| \`${code}\` | ${spec.status} | ${spec.en} | ${spec.zh} |`, `${code} documented`);
  }
});

t.test('README: lists every wegate metric when metrics are added', async (t) => {
  const registry = new Registry();
  createMetrics({ registry, processMetrics: false });
  const text = await readme();
  const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
  t.ok(names.length >= 9, 'metrics registered');
  for (const name of names) t.match(text, `\`${name}\``, `${name} documented`);
});

t.test('ERRORS: every code has a 4xx/5xx status and both languages when defined', async (t) => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.match(code, /^WG_[A-Z_]+$/, `${code} name`);
    t.ok(spec.status >= 400 && spec.status < 600, `${code} status`);
    t.ok(spec.en.length > 0 && /[\u4e00-\u9fff]/.test(spec.zh), `${code} bilingual`);
  }
});
