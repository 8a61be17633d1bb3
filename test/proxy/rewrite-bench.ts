/**
 * Micro-benchmark of rewriteUrl, run by hand (not by tap, not a test):
 *
 *   npx node test/proxy/rewrite-bench.ts
 *
 * One candidate per kind of Location value a route sees: the common relative path on a route that
 * forwards paths unchanged, a relative path through strip_prefix / a base path, a foreign absolute
 * URL (OAuth, CDN), the route's own upstream URL, and the unusual forms that take the URL parser
 * (dot-segments, backslashes). Prints one JSON line of ns per call (best round).
 */
import type { RequestContext } from '../../src/core/http.ts';
import { rewriteUrl } from '../../src/proxy/rewrite.ts';
import { buildRouteTable, type CompiledRoute } from '../../src/proxy/routes.ts';
import { route } from './helpers.ts';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 15);
const N = Number(process.env['BENCH_N'] ?? 200_000);

const table = buildRouteTable([
  route({ name: 'plain', host: 'api1.school.test', upstream: 'https://hub.upstream.test:8080' }),
  route({ name: 'mount', host: 'school.test', path: '/api1/', strip_prefix: true, upstream: 'https://hub.upstream.test:8080' }),
  route({ name: 'based', host: 'based.test', upstream: 'http://base.internal/app' }),
]);
const byName = (n: string) => table.routes.find((r) => r.name === n) as CompiledRoute;
const ctx = (authority: string): RequestContext => ({
  id: 'r',
  startedAt: 0n,
  clientIp: '127.0.0.1',
  secure: true,
  host: authority,
  authority,
  rawPath: '/',
  path: '/',
  query: '',
});
const cases: Record<string, [value: string, route: CompiledRoute, ctx: RequestContext]> = {
  relativeUnchanged: ['/login?next=%2Fhome', byName('plain'), ctx('api1.school.test')],
  relativeStrip: ['/login?next=%2Fhome', byName('mount'), ctx('school.test')],
  relativeBase: ['/app/login?next=%2Fhome', byName('based'), ctx('based.test')],
  foreignAbsolute: ['https://open.weixin.qq.com/connect/oauth2/authorize?appid=x', byName('plain'), ctx('api1.school.test')],
  ownUpstream: ['https://hub.upstream.test:8080/x?y=1', byName('plain'), ctx('api1.school.test')],
  dotSegments: ['/app/a/../b', byName('based'), ctx('based.test')],
  backslash: ['/\\hub.upstream.test:8080/x', byName('plain'), ctx('api1.school.test')],
};

let sink = 0;
const best: Record<string, number> = {};
for (const [name, [v, r, c]] of Object.entries(cases)) {
  for (let i = 0; i < N / 4; i++) sink += rewriteUrl(v, r, table, c)?.length ?? 1;
  best[name] = Infinity;
}
// Candidates interleaved round by round, so that load from other processes hits them alike.
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, [v, r, c]] of Object.entries(cases)) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < N; i++) sink += rewriteUrl(v, r, table, c)?.length ?? 1;
    const ns = Number(process.hrtime.bigint() - start) / N;
    best[name] = Math.min(best[name] ?? Infinity, Math.round(ns * 10) / 10);
  }
}
console.log(JSON.stringify({ node: process.version, ns_per_call: best, sink: sink > 0 }));
