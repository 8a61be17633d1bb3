/**
 * Route `path` prefixes are checked by the request-path rules (issue 10 items 1 and 2): a prefix the
 * normalised, parameter-free routing path of a request could never equal is a config error.
 */
import t from 'tap';
import { loadConfigText } from '../../src/config/load.ts';

const withPath = (path: string) => `listen: { http: ":8080" }\nroutes:\n  - upstream: "https://a.example"\n  - { path: ${JSON.stringify(path)}, upstream: "https://b.example" }\n`;

t.test('loadConfigText: refuses a route path prefix when requests could never match it', async (t) => {
  const cases: [name: string, path: string, msg: string][] = [
    ['dot-dot with parameters (issue 10 item 1)', '/public/..;/admin', 'must be a normalised path prefix'],
    ['encoded dot-dot with parameters', '/lib/%2e%2e;jsessionid=1/x', 'must be a normalised path prefix'],
    ['dot with parameters', '/a/.;x', 'must be a normalised path prefix'],
    ['encoded unreserved character (issue 10 item 2)', '/api/%69mport', 'unreserved characters not %-encoded'],
    ['lower-case hex', '/%e4%b8%ad', 'upper-case hex in escapes'],
    ['path parameters', '/api;x=1/import', 'must not contain ";" (path parameters are ignored when choosing a route)'],
    ['trailing parameter', '/api1;', 'must not contain ";"'],
  ];
  for (const [name, path, msg] of cases) {
    const r = loadConfigText(withPath(path), 'wegate.yaml');
    t.equal(r.ok, false, `${name}: refused`);
    if (r.ok) continue;
    t.equal(r.problems.length, 1, `${name}: one problem`);
    t.equal(r.problems[0]?.path, 'routes[1].path', `${name}: key path`);
    t.equal(r.problems[0]?.line, 4, `${name}: line`);
    t.ok(r.problems[0]?.message.includes(msg), `${name}: ${r.problems[0]?.message}`);
  }
});

t.test('loadConfigText: accepts a route path prefix when it is already normalised', async (t) => {
  for (const path of ['/api/import', '/api1/', '/%E4%B8%AD/', '/a.b/~x', '/a/%252e%252e']) {
    const r = loadConfigText(withPath(path), 'wegate.yaml');
    t.ok(r.ok, `${path}: accepted${r.ok ? '' : ` (${JSON.stringify(r.problems)})`}`);
  }
});
