/**
 * Verification files over HTTP through the real gateway: exact bytes on every host, and a traversal
 * corpus that must get 404 (never 500, never the file, never anything outside the directory).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ADMIN, LOOPBACK, makeConfig, raw, rawStatus, send, startGateway, startUpstream } from '../helpers/gateway.ts';

const CONTENT = 'verification-content-7f3a';
const SECRET = 'OUTSIDE-THE-DIRECTORY';

async function setup(t: import('tap').Test) {
  const root = await mkdtemp(join(tmpdir(), 'wegate-vf-http-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const dir = join(root, 'verify');
  await mkdir(dir);
  await mkdir(join(root, 'sub'));
  await writeFile(join(dir, 'WW_verify_k9QzT3vXw2LmN8pR.txt'), CONTENT);
  // Files with matching names outside the directory: never to be served.
  await writeFile(join(root, 'WW_verify_outside.txt'), SECRET);
  await writeFile(join(root, 'sub', 'WW_verify_k9QzT3vXw2LmN8pR.txt'), SECRET);
  const up = await startUpstream(t, 'vendor');
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    verify_files: { dir },
    routes: [{ name: 'vendor', host: 'api1.school.test', upstream: up.url }],
  });
  const gw = await startGateway(t, config);
  return { gw, up };
}

t.test('verify-files over HTTP: serves exact bytes as text/plain before routing when the path matches', async (t) => {
  const { gw, up } = await setup(t);
  for (const host of ['api1.school.test', 'unrouted.school.test', 'api1.school.test:8080']) {
    const r = await send(gw.httpPort, host, { path: '/WW_verify_k9QzT3vXw2LmN8pR.txt' });
    t.equal(r.status, 200, `${host}: 200`);
    t.equal(r.body, CONTENT, `${host}: exact bytes`);
    t.match(r.headers['content-type'], /^text\/plain/, `${host}: text/plain`);
  }
  const head = await send(gw.httpPort, 'api1.school.test', { method: 'HEAD', path: '/WW_verify_k9QzT3vXw2LmN8pR.txt' });
  t.equal(head.status, 200, 'HEAD answered');
  t.equal(head.body, '', 'HEAD has no body');
  t.equal(up.seen.filter((s) => s.url.includes('WW_verify')).length, 0, 'never proxied');
});

t.test('verify-files over HTTP: a traversal corpus gets 404 and never the file when the host has no route', async (t) => {
  const { gw } = await setup(t);
  const corpus = [
    '/%2e%2e/WW_verify_outside.txt',
    '/%2E%2E/WW_verify_outside.txt',
    '/..%2fWW_verify_outside.txt',
    '/..%2FWW_verify_outside.txt',
    '/%2e%2e%2fWW_verify_outside.txt',
    '/%252e%252e/WW_verify_outside.txt',
    '/..%252fWW_verify_outside.txt',
    '/..\\WW_verify_outside.txt',
    '/..%5cWW_verify_outside.txt',
    '/sub/WW_verify_k9QzT3vXw2LmN8pR.txt',
    '/sub/../WW_verify_outside.txt',
    '/%c0%ae%c0%ae/WW_verify_outside.txt',
    '/%c0%afWW_verify_outside.txt',
    '/WW_verify_k9QzT3vXw2LmN8pR.txt%00',
    '/WW_verify_k9QzT3vXw2LmN8pR.txt%00.html',
    '/WW_verify_k9QzT3vXw2LmN8pR.txt/',
    '/WW_verify_k9QzT3vXw2LmN8pR.txt;',
    '/WW_verify_k9QzT3vXw2LmN8pR.txt;.js',
    '/WW_verify_k9QzT3vXw2LmN8pR.txt%20',
    '/WW_verify_k9QzT3vXw2LmN8pR%2etxt',
    '/ww_verify_k9QzT3vXw2LmN8pR.txt',
    '/WW_VERIFY_k9QzT3vXw2LmN8pR.txt',
    '/./WW_verify_outside.txt',
    '//WW_verify_outside.txt',
    '/WW_verify_outside.txt',
    '/verify/WW_verify_k9QzT3vXw2LmN8pR.txt',
  ];
  for (const target of corpus) {
    const text = await raw(gw.httpPort, `GET ${target} HTTP/1.1\r\nHost: unrouted.school.test\r\nConnection: close\r\n\r\n`);
    t.equal(rawStatus(text), 404, `${target}: 404`);
    t.notMatch(text, SECRET, `${target}: nothing from outside the directory`);
    t.notMatch(text, CONTENT, `${target}: not the file`);
  }
});

t.test('verify-files over HTTP: never answers from the directory when a path is a near miss on a routed host', async (t) => {
  const { gw } = await setup(t);
  for (const target of ['/WW_verify_k9QzT3vXw2LmN8pR.txt/', '/WW_verify_k9QzT3vXw2LmN8pR.txt;', '/%2e%2e/WW_verify_outside.txt']) {
    const text = await raw(gw.httpPort, `GET ${target} HTTP/1.1\r\nHost: api1.school.test\r\nConnection: close\r\n\r\n`);
    const status = rawStatus(text);
    t.ok(status === 404 || status === 200, `${target}: 404, or the vendor's own answer (got ${status})`);
    t.notMatch(text, SECRET, `${target}: nothing from outside the directory`);
    t.notMatch(text, CONTENT, `${target}: not the file`);
  }
});
