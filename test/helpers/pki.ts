/**
 * A throwaway PKI made with the real `openssl` in a temp dir: a root CA, an intermediate, leaves
 * signed by the intermediate (valid, 3 days, long expired), a leaf signed by the root directly, and a
 * self-signed leaf, a CN-only leaf (no subjectAltName) and an expired copy of the intermediate. Chains are written as the admin would have them: cert.pem (leaf only) and
 * fullchain.pem (leaf + intermediate).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

export interface Pki {
  readonly dir: string;
  readonly rootPem: string;
  /** File path of a PEM in the PKI dir. */
  file(name: string): string;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Build the PKI under a temp dir removed in `t`'s teardown. Leaves are for `host` (SAN DNS). */
export function makePki(t: Test, host: string): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'wegate-pki-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ext = (name: string, text: string) => writeFileSync(join(dir, name), text);

  ext(
    'ca.ext',
    'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
  );
  ext(
    'leaf.ext',
    `basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:${host}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`,
  );
  ssl(
    'req',
    '-x509',
    ...EC,
    '-keyout',
    'root.key',
    '-out',
    'root.pem',
    '-days',
    '3650',
    '-subj',
    '/CN=wegate test root',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  ssl('req', ...EC, '-keyout', 'int.key', '-out', 'int.csr', '-subj', '/CN=wegate test intermediate');
  ssl(
    'x509',
    '-req',
    '-in',
    'int.csr',
    '-CA',
    'root.pem',
    '-CAkey',
    'root.key',
    '-set_serial',
    '2',
    '-days',
    '3650',
    '-extfile',
    'ca.ext',
    '-out',
    'int.pem',
  );

  const leaf = (name: string, ca: string, days: string) => {
    ssl('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${host}`);
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-days',
      days,
      '-extfile',
      'leaf.ext',
      '-out',
      `${name}.pem`,
    );
  };
  leaf('leaf', 'int', '365');
  leaf('soon', 'int', '3');
  leaf('direct', 'root', '365');

  // Long expired: `openssl x509` cannot backdate, the mini CA of `openssl ca` can.
  ext(
    'ca.cnf',
    '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\ncopy_extensions=copy\nx509_extensions=x\n[p]\ncommonName=supplied\n[x]\nbasicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
  );
  ext('index.txt', '');
  ext('serial', '10\n');
  ssl('req', ...EC, '-keyout', 'expired.key', '-out', 'expired.csr', '-subj', `/CN=${host}`, '-addext', `subjectAltName=DNS:${host}`);
  ssl(
    'ca',
    '-batch',
    '-config',
    'ca.cnf',
    '-cert',
    'int.pem',
    '-keyfile',
    'int.key',
    '-in',
    'expired.csr',
    '-startdate',
    '20200101000000Z',
    '-enddate',
    '20200201000000Z',
    '-notext',
    '-out',
    'expired.pem',
  );

  ssl(
    'req',
    '-x509',
    ...EC,
    '-keyout',
    'self.key',
    '-out',
    'self.pem',
    '-days',
    '365',
    '-subj',
    `/CN=${host}`,
    '-addext',
    `subjectAltName=DNS:${host}`,
  );

  // A leaf whose host is only in the CN (no subjectAltName), and the intermediate (same key) re-issued
  // with dates long past: the leaf still verifies against it, the handshake fails on its expiry.
  ext('cn-only.ext', 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  ssl('req', ...EC, '-keyout', 'cn-only.key', '-out', 'cn-only.csr', '-subj', `/CN=${host}`);
  ssl(
    'x509',
    '-req',
    '-in',
    'cn-only.csr',
    '-CA',
    'int.pem',
    '-CAkey',
    'int.key',
    '-set_serial',
    '7',
    '-days',
    '365',
    '-extfile',
    'cn-only.ext',
    '-out',
    'cn-only.pem',
  );
  ext(
    'ca-int.cnf',
    '[ca]\ndefault_ca=d\n[d]\ndatabase=index-int.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\nx509_extensions=x\n[p]\ncommonName=supplied\n[x]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
  );
  ext('index-int.txt', '');
  ssl(
    'ca',
    '-batch',
    '-config',
    'ca-int.cnf',
    '-cert',
    'root.pem',
    '-keyfile',
    'root.key',
    '-in',
    'int.csr',
    '-startdate',
    '20200101000000Z',
    '-enddate',
    '20210101000000Z',
    '-notext',
    '-out',
    'int-expired.pem',
  );

  const read = (name: string) => readFileSync(join(dir, name), 'utf8');
  const intermediate = read('int.pem');
  for (const name of ['leaf', 'soon', 'expired', 'cn-only'])
    writeFileSync(join(dir, `${name}-fullchain.pem`), read(`${name}.pem`) + intermediate);
  writeFileSync(join(dir, 'leaf-expired-int.pem'), read('leaf.pem') + read('int-expired.pem'));
  return { dir, rootPem: read('root.pem'), file: (name) => join(dir, name) };
}
