/**
 * The path corpus of issue 10 against a real Apache Tomcat 10 (one start for the file): Tomcat
 * drops ";parameters" before resolving dot-segments, so "/public/..;/admin/x" is its admin servlet.
 * Through the gateway, for every entry, either the gateway refuses it, or the route it chose (the
 * access log's route) is the one whose prefix covers the path Tomcat acted on (getServletPath() +
 * getPathInfo(), mapped back through the route's base path and strip_prefix), and that is the path
 * the client asked for. Tomcat's admin servlet is never reached: the /admin route goes elsewhere.
 */
import t from 'tap';
import { ADMIN, LOOPBACK, makeConfig, raw, rawStatus, startGateway, startUpstream, waitFor } from '../helpers/gateway.ts';
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
import { startTomcat, type TomcatEcho } from '../helpers/tomcat.ts';

const HOST = 'app.school.test';

const get = (target: string) => `GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`;

function echoOf(out: string): TomcatEcho | undefined {
  const body = out.slice(out.indexOf('\r\n\r\n') + 4);
  try {
    return JSON.parse(body) as TomcatEcho;
  } catch {
    return undefined;
  }
}

t.test('tomcat: the route chosen and the path Tomcat acts on agree when the path corpus is sent through the gateway', async (t) => {
  const tomcat = await startTomcat(t);
  const other = await startUpstream(t, 'admin');

  // Without the gateway, Tomcat reads the parameter forms as dot-segments: the corpus can catch a bypass.
  const direct = echoOf(await raw(tomcat.port, get('/public/..;/admin/x')));
  t.match(
    direct,
    { servlet: 'admin', servletPath: '/admin', pathInfo: '/x' },
    'Tomcat alone maps /public/..;/admin/x to its admin servlet',
  );
  t.match(
    echoOf(await raw(tomcat.port, get('/api;x=1/import'))),
    { servletPath: '', pathInfo: '/api/import' },
    'and /api;x=1/import to /api/import',
  );

  const routes = CORPUS_ROUTES.map((r) => corpusRouteConfig(r, HOST, r.name === 'admin' ? other.url : tomcat.origin));
  const gw = await startGateway(t, makeConfig({ listen: LOOPBACK, admin: ADMIN, routes }));
  const tally = { refused: 0, tomcat: 0, admin: 0, redirected: 0, notFound: 0 };
  for (const target of CORPUS) {
    const out = await raw(gw.httpPort, get(target));
    const status = rawStatus(out);
    const asked = servletPath(pathOf(target));
    if (mustRefuse(target) || asked === undefined) {
      t.equal(status, 400, `${target}: refused`);
      tally.refused++;
      continue;
    }
    if (status === 200) {
      const id = /\r\nx-request-id: (\S+)\r\n/i.exec(out)?.[1];
      const line = await waitFor(() => gw.logs.lines.find((l) => l.log === 'access' && l.req_id === id));
      const route = CORPUS_ROUTES.find((r) => r.name === line?.route);
      if (route === undefined) {
        t.fail(`${target}: no access line with a corpus route (${JSON.stringify(line)})`);
        continue;
      }
      if (route.name === 'admin') {
        t.equal(bestRoute(asked)?.name, 'admin', `${target}: admin route only for an /admin path`);
        const received = /\r\n\r\nadmin GET (\S+)$/.exec(out)?.[1];
        t.equal(
          servletPath(pathOf(received ?? '')),
          asked,
          `${target}: the admin upstream got the path the client asked for (${received})`,
        );
        tally.admin++;
        continue;
      }
      const echo = echoOf(out);
      if (echo === undefined) {
        t.fail(`${target}: not an answer from Tomcat: ${JSON.stringify(out)}`);
        continue;
      }
      const acted = echo.servletPath + (echo.pathInfo ?? '');
      t.equal(echo.servlet, 'root', `${target}: Tomcat's admin servlet not reached (${echo.uri})`);
      t.equal(servletPath(echo.uri), acted, `${target}: the reference reads ${echo.uri} as Tomcat does`);
      const pub = backToPublic(route, acted);
      t.equal(bestRoute(pub ?? '')?.name, route.name, `${target}: ${route.name} covers what Tomcat acted on (${acted})`);
      t.equal(pub, asked, `${target}: Tomcat acts on the path the client asked for`);
      tally.tomcat++;
    } else if (status === 301) {
      t.equal(bestRoute(asked), undefined, `${target}: redirected only when no route covers it`);
      t.equal(/\r\nlocation: (\S+)\r\n/i.exec(out)?.[1], `${asked}/`, `${target}: redirected to the route path`);
      tally.redirected++;
    } else {
      t.equal(status, 404, `${target}: routed, redirected or 404`);
      t.equal(bestRoute(asked), undefined, `${target}: 404 only when no route covers ${asked}`);
      tally.notFound++;
    }
  }
  t.ok(tally.refused > 30 && tally.tomcat > 30 && tally.admin > 0, `every outcome occurs: ${JSON.stringify(tally)}`);

  // The import route's policy holds for the forms Tomcat maps to /api/import.
  for (const target of ['/api/%69mport', '/api;x=1/import', '/;x/api/import', '/api/import;jsessionid=A1']) {
    const out = await raw(
      gw.httpPort,
      `POST ${target} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 32\r\nConnection: close\r\n\r\n${'x'.repeat(32)}`,
    );
    t.equal(rawStatus(out), 413, `${target}: max_body_bytes of /api/import`);
  }
  const small = echoOf(
    await raw(gw.httpPort, `POST /api;x=1/import HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`),
  );
  t.match(small, { pathInfo: '/api/import', bodyBytes: 5 }, 'a small body reaches Tomcat at /api/import');
});

t.test('tomcat helper: fails naming apt-get install tomcat10 when Tomcat is missing', async (t) => {
  await t.rejects(startTomcat(t, { home: '/nonexistent/tomcat10' }), /apt-get install tomcat10/);
});
