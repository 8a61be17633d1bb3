/**
 * The relay's configuration through the real loader: defaults, and every problem reported at once
 * with its key path and YAML line; hashes are the only form a token or password takes in the file.
 */
import { Registry } from 'prom-client';
import t from 'tap';
import { Agent } from 'undici';
import { createGateway } from '../../../src/app.ts';
import { loadConfigText } from '../../../src/config/load.ts';
import { captureLogger, makeConfig } from '../../helpers/gateway.ts';
import { CORP, PASSWORD, SECRET, sha256, TOKEN } from './helpers.ts';

const BASE = `listen:
  http: "127.0.0.1:0"
routes:
  - upstream: "http://127.0.0.1:1"
wecom:
  corp_id: ${CORP}
  apps:
    - name: ecard
      secret: { env: ECARD_SECRET }
`;

t.test('relay config: defaults are filled when only a client is given', async (t) => {
  const r = loadConfigText(
    `${BASE}relay:\n  clients:\n    - name: vendor\n      app: ecard\n      token_sha256: "${sha256(TOKEN)}"\n      apis: [/cgi-bin/user/get]\n`,
    'wegate.yaml',
  );
  if (!r.ok) return t.fail(JSON.stringify(r.problems));
  t.equal(r.config.gateway.prefix, '/.wegate/');
  t.equal(r.config.relay?.max_body_bytes, 1024 * 1024);
  t.equal(r.config.relay?.connect_listen, undefined);
  t.same(r.config.relay?.clients[0]?.rate, { per_second: 50, burst: 100 });
  t.same(r.config.relay?.clients[0]?.source_cidrs, []);
});

t.test('relay config: every problem is reported with its line when clients are wrong', async (t) => {
  const text = `${BASE}relay:
  clients:
    - name: a
      token_sha256: "${sha256(TOKEN)}"
    - name: a
      app: nosuchapp
      token_sha256: "${sha256(TOKEN)}"
      apis: [/cgi-bin/user/get]
      source_cidrs: ["10.0.0.0/33", "not-an-ip", "192.0.2.1"]
    - name: c
      apis: [/cgi-bin/user/get]
    - name: d
      token_sha256: "${TOKEN}"
      app: ecard
      apis: ["/cgi-bin/user/get?access_token=x"]
`;
  const r = loadConfigText(text, 'wegate.yaml');
  if (r.ok) return t.fail('accepted');
  const got = r.problems.map((p) => `${p.path} (line ${p.line}): ${p.message}`);
  t.match(got.join('\n'), /relay\.clients\[0\]\.app \(line 12\): must name the wecom\.apps entry/);
  t.match(got.join('\n'), /relay\.clients\[0\]\.apis \(line 12\): must list at least one/);
  t.match(got.join('\n'), /relay\.clients\[1\]\.name \(line 14\): must be unique/);
  t.match(got.join('\n'), /relay\.clients\[1\]\.app \(line 15\): must name an entry of wecom\.apps, got "nosuchapp" \(defined: ecard\)/);
  t.match(got.join('\n'), /relay\.clients\[1\]\.source_cidrs\[0\] \(line 18\): must be an address or CIDR block/);
  t.match(got.join('\n'), /relay\.clients\[1\]\.source_cidrs\[1\] \(line 18\)/);
  t.notMatch(got.join('\n'), /source_cidrs\[2\]/, '192.0.2.1 is a valid single address');
  t.match(got.join('\n'), /relay\.clients\[2\]\.token_sha256 .*got neither/);
  t.match(got.join('\n'), /relay\.clients\[2\]\.apis .*token_sha256 is not/);
  t.match(got.join('\n'), /relay\.clients\[3\]\.token_sha256 \(line 22\): must be a SHA-256 hex digest/);
  t.match(got.join('\n'), /relay\.clients\[3\]\.apis\[0\] \(line 24\): must be a WeCom API path/);
  t.notOk(got.join('\n').includes(TOKEN), 'a token pasted in place of its hash is not echoed');
});

t.test('relay config: the relay needs the wecom section when it is configured', async (t) => {
  const r = loadConfigText(
    `listen:\n  http: ":8080"\nroutes:\n  - upstream: "http://127.0.0.1:1"\nrelay:\n  clients:\n    - name: v\n      connect_password_sha256: "${sha256(PASSWORD)}"\n`,
    'wegate.yaml',
  );
  t.match(r.ok ? [] : r.problems, [{ path: 'relay', message: /needs the `wecom:` section/ }]);
});

t.test('relay config: gateway.prefix must be one plain segment when it is set', async (t) => {
  for (const prefix of ['/a/b/', 'wegate/', '/../', '/wegate']) {
    const r = loadConfigText(`${BASE}gateway:\n  prefix: "${prefix}"\n`, 'wegate.yaml');
    t.match(r.ok ? [] : r.problems, [{ path: 'gateway.prefix' }], prefix);
  }
});

t.test('relay tunnel: start-up fails clearly when the WeCom egress is a forward proxy', async (t) => {
  const config = makeConfig({
    listen: { http: '127.0.0.1:0' },
    routes: [{ upstream: 'http://127.0.0.1:1' }],
    wecom: { api_base: 'https://127.0.0.1:9', corp_id: CORP, apps: [{ name: 'ecard', secret: { env: 'ECARD_SECRET' } }] },
    relay: { connect_listen: '127.0.0.1:0', clients: [{ name: 'v', connect_password_sha256: sha256(PASSWORD) }] },
  });
  const dispatcher = new Agent();
  t.teardown(() => dispatcher.close());
  const { logger } = captureLogger();
  await t.rejects(
    createGateway(config, {
      logger,
      registry: new Registry(),
      processMetrics: false,
      env: { ECARD_SECRET: SECRET },
      wecomEgress: { name: 'office-proxy', dispatcher, viaProxy: true },
    }),
    /relay\.connect_listen: the WeCom egress "office-proxy" is a forward proxy; the CONNECT tunnel does not chain through another proxy/,
  );
});

t.test('relay config: a route under gateway.prefix is refused when it could never be reached', async (t) => {
  const r = loadConfigText(
    `listen:\n  http: ":8080"\nroutes:\n  - upstream: "http://127.0.0.1:1"\n  - path: /.wegate/x\n    upstream: "http://127.0.0.1:2"\n  - path: /.wegate\n    upstream: "http://127.0.0.1:3"\n`,
    'wegate.yaml',
  );
  t.match(r.ok ? [] : r.problems, [
    { path: 'routes[1].path', line: 5, message: /must not be under gateway\.prefix "\/\.wegate\/"/ },
    { path: 'routes[2].path', line: 7 },
  ]);
});
