/**
 * routes[].wecom_errors in the config: defaults, and the problems reported with path and line.
 */
import { join } from 'node:path';
import t from 'tap';
import { loadConfigText } from '../../src/config/load.ts';

const FILE = join(import.meta.dirname, 'wegate.yaml');
const config = (route: string) => `listen:\n  http: ":8080"\nroutes:\n  - upstream: "https://hub.17wanxiao.com:8080"\n${route}`;

t.test('config: wecom_errors defaults to scan on, explain off, no app when a route leaves it out', async (t) => {
  const r = loadConfigText(config(''), FILE);
  t.ok(r.ok);
  if (r.ok) t.same(r.config.routes[0]?.wecom_errors, { scan: true, explain: false });
});

t.test('config: wecom_errors.explain is refused with its path and line when scan is false', async (t) => {
  const r = loadConfigText(config('    wecom_errors:\n      scan: false\n      explain: true\n'), FILE);
  t.notOk(r.ok);
  if (!r.ok) {
    t.same(r.problems, [
      {
        path: 'routes[0].wecom_errors.explain',
        line: 7,
        message: 'must be false when scan is false (the explanation page shows what the scan finds), got true',
      },
    ]);
  }
});

t.test('config: wecom_errors reports a misspelt key, a wrong type and an empty app all at once', async (t) => {
  const r = loadConfigText(config('    wecom_errors:\n      scna: true\n      explain: "yes"\n      app: ""\n'), FILE);
  t.notOk(r.ok);
  if (!r.ok) {
    t.same(
      r.problems.map((p) => [p.path, p.line]),
      [
        ['routes[0].wecom_errors.scna', 6],
        ['routes[0].wecom_errors.explain', 7],
        ['routes[0].wecom_errors.app', 8],
      ],
    );
    t.match(r.problems[0]?.message, /did you mean `scan`/);
  }
});
