import t from 'tap';
import { parseTarget, pathHasPrefix, routingPath } from '../../src/core/http.ts';

t.test('parseTarget: normalises paths when they are valid', async (t) => {
  const cases: [name: string, target: string, path: string, query: string][] = [
    ['root', '/', '/', ''],
    ['plain', '/a/b', '/a/b', ''],
    ['trailing slash kept', '/a/b/', '/a/b/', ''],
    ['repeated slashes merged', '/a//b///c', '/a/b/c', ''],
    ['leading double slash cannot become an authority', '//evil.com/x', '/evil.com/x', ''],
    ['single dot removed', '/a/./b', '/a/b', ''],
    ['dot-dot resolved', '/public/../admin', '/admin', ''],
    ['encoded dot-dot resolved', '/public/%2e%2e/admin', '/admin', ''],
    ['mixed-case encoded dots', '/a/b/.%2E/c', '/a/c', ''],
    ['dot-dot at end keeps directory form', '/a/b/..', '/a/', ''],
    ['query untouched', '/x?y=1/../&z=%2f', '/x', '?y=1/../&z=%2f'],
    ['other escapes kept encoded', '/%E4%B8%AD/a%20b', '/%E4%B8%AD/a%20b', ''],
    ['double-encoded dots are not dots', '/a/%252e%252e/b', '/a/%252e%252e/b', ''],
    ['trailing semicolon is data', '/WW_verify_abc.txt;', '/WW_verify_abc.txt;', ''],
    ['other escapes get upper-case hex', '/%e4%b8%ad/%3b', '/%E4%B8%AD/%3B', ''],
    ['unreserved escapes decoded (issue 10 item 2)', '/api/%69mport', '/api/import', ''],
    ['every unreserved class decoded', '/%41%7a%30%2d%5f%7E%2E', '/Az0-_~.', ''],
    ['encoded dot inside a name decoded', '/a%2eb/c', '/a.b/c', ''],
    ['double-encoded dot-dot decoded once only', '/a/%252E%252e/b', '/a/%252E%252e/b', ''],
    ['path parameters kept', '/api;x=1/import;jsessionid=A1', '/api;x=1/import;jsessionid=A1', ''],
    ['dot-dot resolved against a segment with parameters', '/admin;x/../public', '/public', ''],
    ['dot-dot removes a parameters-only segment with the named one before it', '/public/;x/../admin', '/admin', ''],
    ['dots inside a name with parameters are data', '/a/...;x/b', '/a/...;x/b', ''],
    ['encoded semicolon after a name is data', '/a/b%3b../c', '/a/b%3B../c', ''],
  ];
  for (const [name, target, path, query] of cases) {
    const r = parseTarget(target);
    t.same(r, { ok: true, rawPath: target.split('?')[0], path, query }, name);
  }
});

t.test('parseTarget: rejects targets when they could escape a prefix or confuse a backend', async (t) => {
  const cases: [name: string, target: string | undefined, code: string][] = [
    ['missing', undefined, 'WG_BAD_REQUEST'],
    ['absolute-form', 'http://evil.example/x', 'WG_BAD_REQUEST'],
    ['asterisk-form', '*', 'WG_BAD_REQUEST'],
    ['authority-form', 'evil.example:443', 'WG_BAD_REQUEST'],
    ['climbs above root', '/../etc/passwd', 'WG_BAD_PATH'],
    ['encoded climb above root', '/%2e%2e/%2e%2e/etc/passwd', 'WG_BAD_PATH'],
    ['climb after resolving', '/a/../../b', 'WG_BAD_PATH'],
    ['encoded slash', '/public%2f..%2fadmin', 'WG_BAD_PATH'],
    ['encoded slash lower-case', '/a%2Fb', 'WG_BAD_PATH'],
    ['raw backslash', '/a\\..\\b', 'WG_BAD_PATH'],
    ['encoded backslash', '/a%5c..%5cb', 'WG_BAD_PATH'],
    ['encoded NUL', '/WW_verify_a.txt%00.html', 'WG_BAD_PATH'],
    ['overlong UTF-8 dot', '/%c0%ae%c0%ae/x', 'WG_BAD_PATH'],
    ['truncated escape', '/a%2', 'WG_BAD_PATH'],
    ['non-hex escape', '/a%zz', 'WG_BAD_PATH'],
    ['control character', '/a\tb', 'WG_BAD_PATH'],
    ['dot-dot with empty parameters (issue 10 item 1)', '/public/..;/admin/x', 'WG_BAD_PATH'],
    ['dot with parameters', '/public/.;x/y', 'WG_BAD_PATH'],
    ['encoded dot-dot with jsessionid', '/public/%2e%2e;jsessionid=1/admin', 'WG_BAD_PATH'],
    ['mixed-case encoded dot-dot with parameters', '/public/%2E%2e;a=b/admin', 'WG_BAD_PATH'],
    ['dot-dot with a parameter pair', '/lib/..;a=b/admin', 'WG_BAD_PATH'],
    ['dot-dot with parameters as the last segment', '/public/..;', 'WG_BAD_PATH'],
    ['dot-dot before an encoded semicolon', '/public/..%3bx/admin', 'WG_BAD_PATH'],
    ['dot before an encoded semicolon, lower-case', '/public/%2e%3B/admin', 'WG_BAD_PATH'],
    ['dot-dot after a parameters-only first segment climbs above the root', '/;x/../admin', 'WG_BAD_PATH'],
    ['fragment (issue 10 item 3)', '/public/x#frag', 'WG_BAD_REQUEST'],
    ['fragment after a query', '/public/x?a=1#frag', 'WG_BAD_REQUEST'],
    ['fragment in an encoded path', '/public/%41#frag', 'WG_BAD_REQUEST'],
    ['bare fragment', '/#', 'WG_BAD_REQUEST'],
  ];
  for (const [name, target, code] of cases) {
    const r = parseTarget(target);
    t.equal(r.ok, false, `${name}: rejected`);
    if (!r.ok) t.equal(r.code, code, `${name}: ${code}`);
  }
});

t.test('pathHasPrefix: matches only when the prefix ends on a segment boundary', async (t) => {
  const cases: [path: string, prefix: string, expected: boolean][] = [
    ['/api', '/api', true],
    ['/api/x', '/api', true],
    ['/apix', '/api', false],
    ['/api/x', '/api/', true],
    ['/api', '/api/', false],
    ['/anything', '/', true],
  ];
  for (const [path, prefix, expected] of cases) t.equal(pathHasPrefix(path, prefix), expected, `${path} under ${prefix}`);
});

t.test('routingPath: removes path parameters and the segments they leave empty when a path has them', async (t) => {
  const cases: [path: string, expected: string][] = [
    ['/api/import', '/api/import'],
    ['/api;x=1/import', '/api/import'],
    ['/api/import;jsessionid=A1', '/api/import'],
    ['/;x/api/import', '/api/import'],
    ['/;jsessionid=A1', '/'],
    ['/a;x/', '/a/'],
    ['/a/;x', '/a/'],
    ['/a;x=1;y=2/b', '/a/b'],
    ['/a%3Bx/b', '/a%3Bx/b'],
  ];
  for (const [path, expected] of cases) t.equal(routingPath(path), expected, path);
});
