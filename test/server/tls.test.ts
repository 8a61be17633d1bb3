/**
 * HTTPS listener certificates: SNI selection among several certificates, reload on demand and on
 * file change (atomic rename) without dropping open connections, and a broken new certificate
 * keeping the old one.
 */

import { X509Certificate } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { certificateNames, createCertStore } from '../../src/server/tls.ts';
import {
  ADMIN,
  CA,
  captureLogger,
  LOOPBACK,
  makeConfig,
  peerCertificate,
  send,
  startGateway,
  startUpstream,
  TLS_DIR,
  waitFor,
} from '../helpers/gateway.ts';

const fixture = (name: string) => join(TLS_DIR, name);
const serialOf = async (name: string) => new X509Certificate(await readFile(fixture(`${name}.pem`))).serialNumber;

async function tmpCerts(t: Test, names: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wegate-tls-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const n of names) {
    await copyFile(fixture(`${n}.pem`), join(dir, `${n}.pem`));
    await copyFile(fixture(`${n}.key`), join(dir, `${n}.key`));
  }
  return dir;
}

/** Replace a file the way certbot / `mv` do: write a temp file, rename it over the old one. */
async function atomicReplace(target: string, source: string): Promise<void> {
  const tmp = `${target}.tmp-${process.pid}`;
  await writeFile(tmp, await readFile(source));
  await rename(tmp, target);
}

async function httpsGateway(t: Test, certs: { cert: string; key: string }[], watch: boolean) {
  const up = await startUpstream(t, 'app');
  const config = makeConfig({
    listen: { ...LOOPBACK, https: '127.0.0.1:0' },
    admin: ADMIN,
    tls: { certs, watch },
    routes: [{ name: 'app', upstream: up.url }],
  });
  return startGateway(t, config);
}

t.test('tls: certificateNames returns every DNS SAN when the certificate has wildcards', async (t) => {
  const names = certificateNames(new X509Certificate(await readFile(fixture('api2.pem'))));
  t.same(names, ['api2.school.test', '*.api2.school.test']);
});

t.test('tls: SNI picks the matching certificate when two are loaded, the first one when none matches', async (t) => {
  const s = await httpsGateway(
    t,
    [
      { cert: fixture('api1.pem'), key: fixture('api1.key') },
      { cert: fixture('api2.pem'), key: fixture('api2.key') },
    ],
    false,
  );
  const cases: [string | undefined, string][] = [
    ['api1.school.test', 'api1.school.test'],
    ['api2.school.test', 'api2.school.test'],
    ['API2.School.Test', 'api2.school.test'],
    ['x.api2.school.test', 'api2.school.test'],
    ['a.b.api2.school.test', 'api1.school.test'],
    ['unknown.test', 'api1.school.test'],
    [undefined, 'api1.school.test'],
  ];
  for (const [sni, cn] of cases) {
    const cert = await peerCertificate(s.httpsPort, sni);
    t.equal(cert.subject.CN, cn, `SNI ${sni ?? '(none)'} → ${cn}`);
  }
  // A full request verifies against the CA with the right name.
  const r = await send(s.httpsPort, 'x.api2.school.test', { path: '/p', tls: {} });
  t.equal(r.body, 'app GET /p');
});

t.test('tls: reloadCertificates swaps the served certificate and keeps open connections when the files changed', async (t) => {
  const dir = await tmpCerts(t, ['api1']);
  const s = await httpsGateway(t, [{ cert: join(dir, 'api1.pem'), key: join(dir, 'api1.key') }], false);
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: CA });
  t.teardown(() => agent.destroy());
  const first = await send(s.httpsPort, 'api1.school.test', { path: '/1', tls: { agent } });
  t.equal(first.serial, await serialOf('api1'));

  await copyFile(fixture('api1-renewed.pem'), join(dir, 'api1.pem'));
  await copyFile(fixture('api1-renewed.key'), join(dir, 'api1.key'));
  await s.gw.reloadCertificates();

  const fresh = await peerCertificate(s.httpsPort, 'api1.school.test');
  t.equal(fresh.serialNumber, await serialOf('api1-renewed'), 'new connections get the renewed certificate');
  const noSni = await peerCertificate(s.httpsPort, undefined);
  t.equal(noSni.serialNumber, await serialOf('api1-renewed'), 'also without SNI (the default context)');
  const again = await send(s.httpsPort, 'api1.school.test', { path: '/2', tls: { agent } });
  t.ok(again.reused, 'the open keep-alive connection was reused');
  t.equal(again.serial, await serialOf('api1'), 'and still uses the certificate it was made with');
  t.equal(again.body, 'app GET /2');
  const m = await s.registry.getSingleMetricAsString('wegate_tls_cert_reloads_total');
  t.match(m, /result="success"\} 1/);
});

t.test('tls: the watcher picks up a certificate when it is replaced on disk by rename', async (t) => {
  const dir = await tmpCerts(t, ['api1', 'api2']);
  const s = await httpsGateway(
    t,
    [
      { cert: join(dir, 'api1.pem'), key: join(dir, 'api1.key') },
      { cert: join(dir, 'api2.pem'), key: join(dir, 'api2.key') },
    ],
    true,
  );
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: CA });
  t.teardown(() => agent.destroy());
  t.equal((await send(s.httpsPort, 'api1.school.test', { tls: { agent } })).serial, await serialOf('api1'));
  // Key first, then certificate, like a renewal tool: in between the pair mismatches and must not be used.
  await atomicReplace(join(dir, 'api1.key'), fixture('api1-renewed.key'));
  await atomicReplace(join(dir, 'api1.pem'), fixture('api1-renewed.pem'));
  const renewed = await serialOf('api1-renewed');
  const served = await waitFor(async () => (await peerCertificate(s.httpsPort, 'api1.school.test')).serialNumber === renewed, 5000);
  t.ok(served, 'renewed certificate served after the file change');
  t.equal((await peerCertificate(s.httpsPort, 'api2.school.test')).subject.CN, 'api2.school.test', 'other certificate unchanged');
  const again = await send(s.httpsPort, 'api1.school.test', { path: '/still', tls: { agent } });
  t.ok(again.reused, 'existing connection still open');
  t.equal(again.body, 'app GET /still');
});

t.test('tls: keeps all the old certificates when a new one is broken', async (t) => {
  const dir = await tmpCerts(t, ['api1', 'api2']);
  const s = await httpsGateway(
    t,
    [
      { cert: join(dir, 'api1.pem'), key: join(dir, 'api1.key') },
      { cert: join(dir, 'api2.pem'), key: join(dir, 'api2.key') },
    ],
    false,
  );
  const api1 = await serialOf('api1');
  const broken: [string, () => Promise<void>][] = [
    ['garbage PEM', () => writeFile(join(dir, 'api2.pem'), '-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n')],
    ['key of another certificate', () => copyFile(fixture('api2.key'), join(dir, 'api1.key'))],
    ['missing file', () => rm(join(dir, 'api2.key'))],
  ];
  let errors = 0;
  for (const [name, breakIt] of broken) {
    // Renewing api1 in the same reload must not take effect either: all or nothing.
    await copyFile(fixture('api1-renewed.pem'), join(dir, 'api1.pem'));
    await copyFile(fixture('api1-renewed.key'), join(dir, 'api1.key'));
    await breakIt();
    await s.gw.reloadCertificates();
    errors++;
    t.equal((await peerCertificate(s.httpsPort, 'api1.school.test')).serialNumber, api1, `${name}: old api1 still served`);
    t.equal((await peerCertificate(s.httpsPort, 'api2.school.test')).subject.CN, 'api2.school.test', `${name}: api2 still served`);
    const m = await s.registry.getSingleMetricAsString('wegate_tls_cert_reloads_total');
    t.match(m, new RegExp(`result="error"\\} ${errors}`), `${name}: counted`);
    await copyFile(fixture('api2.pem'), join(dir, 'api2.pem'));
    await copyFile(fixture('api2.key'), join(dir, 'api2.key'));
  }
  const failures = s.logs.lines.filter((l) => l.msg === 'TLS certificate reload failed; keeping the certificates in use');
  t.equal(failures.length, broken.length, 'each failure logged');
  t.notMatch(s.logs.text(), /PRIVATE KEY|BEGIN/, 'no key material in the logs');
  const r = await send(s.httpsPort, 'api1.school.test', { path: '/ok', tls: {} });
  t.equal(r.body, 'app GET /ok', 'still serving');
});

t.test('tls: admin /metrics has an expiry gauge per certificate when HTTPS is configured', async (t) => {
  const s = await httpsGateway(
    t,
    [
      { cert: fixture('api1.pem'), key: fixture('api1.key') },
      { cert: fixture('api2.pem'), key: fixture('api2.key') },
    ],
    false,
  );
  const r = await send(s.adminPort, '127.0.0.1', { path: '/metrics' });
  const seconds = (name: string) => Number(new RegExp(`wegate_tls_cert_expiry_seconds\\{cert="${name}"\\} (\\S+)`).exec(r.body)?.[1]);
  t.ok(seconds('api1.school.test') > 50 * 365 * 86400, 'api1 expires in ~100 years');
  t.ok(seconds('api2.school.test') > 50 * 365 * 86400, 'api2 too');
});

t.test('tls: createCertStore rejects at start when a certificate is unusable', async (t) => {
  const { logger } = captureLogger();
  const metrics = createMetrics({ registry: new Registry(), processMetrics: false });
  await t.rejects(
    createCertStore({ certs: [{ cert: fixture('api1.pem'), key: fixture('api2.key') }], watch: false, logger, metrics }),
    /api1\.pem/,
  );
  await t.rejects(createCertStore({ certs: [{ cert: fixture('nope.pem'), key: fixture('api1.key') }], watch: false, logger, metrics }), {
    code: 'ENOENT',
  });
});

t.test('tls: SNICallback never throws when the client sends any name', async (t) => {
  const { logger } = captureLogger();
  const metrics = createMetrics({ registry: new Registry(), processMetrics: false });
  const store = await createCertStore({ certs: [{ cert: fixture('api1.pem'), key: fixture('api1.key') }], watch: false, logger, metrics });
  t.teardown(() => store.close());
  for (const name of ['', '.', '..', '*', '*.', 'a'.repeat(1000), 'ä.test', '\u0000']) {
    let got: unknown = 'none';
    t.doesNotThrow(() => store.SNICallback(name, (err, ctx) => (got = err ?? ctx)));
    t.ok(got, `${JSON.stringify(name.slice(0, 10))}: answered with a context`);
  }
});
