/**
 * The path corpus of issue 10 (items 1, 2, 3, 12) through the real listener against loopback echo
 * upstreams, one per route: for every entry the gateway refuses it with 400 exactly when it must, or
 * the route it chose (the upstream that answered) is the one whose prefix covers the path that
 * upstream acts on (read as a servlet container reads it), and that path is the one the client
 * asked for.
 */
import t from 'tap';
import {
  backToPublic,
  bestRoute,
  CORPUS,
  CORPUS_ROUTES,
  corpusRouteConfig,
  mustRefuse,
  pathOf,
  servletPath,
} from '../helpers/path-corpus.ts';
import { ADMIN, LOOPBACK, makeConfig, raw, rawStatus, startGateway, startUpstream } from '../helpers/gateway.ts';

const HOST = 'app.school.test';

t.test('pipeline: the route chosen and the path an echo upstream receives agree when the path corpus is sent', async (t) => {
  const routes: Record<string, unknown>[] = [];
  for (const r of CORPUS_ROUTES) routes.push(corpusRouteConfig(r, HOST, (await startUpstream(t, r.name)).url));
  const gw = await startGateway(t, makeConfig({ listen: LOOPBACK, admin: ADMIN, routes }));
  const tally = { refused: 0, routed: 0, redirected: 0, notFound: 0 };
  for (const target of CORPUS) {
    const out = await raw(gw.httpPort, `GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
    const status = rawStatus(out);
    const asked = servletPath(pathOf(target));
    if (mustRefuse(target) || asked === undefined) {
      t.equal(status, 400, `${target}: refused`);
      tally.refused++;
      continue;
    }
    if (status === 200) {
      const m = /\r\n\r\n(\S+) GET (\S+)$/.exec(out);
      const route = CORPUS_ROUTES.find((r) => r.name === m?.[1]);
      if (route === undefined || m === null) {
        t.fail(`${target}: unexpected answer ${JSON.stringify(out)}`);
        continue;
      }
      const received = m[2] as string;
      const acted = servletPath(pathOf(received));
      const pub = acted === undefined ? undefined : backToPublic(route, acted);
      t.equal(bestRoute(pub ?? '')?.name, route.name, `${target}: ${route.name} covers what its upstream acts on (${received})`);
      t.equal(pub, asked, `${target}: the upstream acts on the path the client asked for`);
      tally.routed++;
    } else if (status === 301) {
      t.equal(bestRoute(asked), undefined, `${target}: redirected only when no route covers it`);
      t.equal(/\r\nlocation: (\S+)\r\n/i.exec(out)?.[1], `${asked}/`, `${target}: redirected to the route path`);
      t.equal(bestRoute(`${asked}/`)?.prefix, `${asked}/`, `${target}: a route has that path`);
      tally.redirected++;
    } else {
      t.equal(status, 404, `${target}: routed, redirected or 404`);
      t.equal(bestRoute(asked), undefined, `${target}: 404 only when no route covers ${asked}`);
      tally.notFound++;
    }
  }
  t.ok(CORPUS.length > 100, `corpus of ${CORPUS.length} entries`);
  t.ok(
    tally.refused > 30 && tally.routed > 30 && tally.redirected > 0 && tally.notFound > 0,
    `both outcomes occur: ${JSON.stringify(tally)}`,
  );
});
