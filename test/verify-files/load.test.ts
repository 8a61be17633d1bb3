import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { MAX_FILE_BYTES, MAX_FILES, VerifyFilesError } from '../../src/verify-files/index.ts';
import { gauge, sandbox } from './helpers.ts';

t.test('verify-files: loads WW_/MP_verify files and configured names when they are in the directory', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.dir, 'WW_verify_54wuPnLpuTWkAF0Z.txt'), '54wuPnLpuTWkAF0Z');
  writeFileSync(path.join(s.dir, 'MP_verify_AbC123.txt'), 'AbC123');
  writeFileSync(path.join(s.dir, 'baidu_verify_code-x.html'), 'baidu');
  const vf = await s.open({ names: ['baidu_verify_code-x.html'] });
  t.equal(vf.size, 3);
  t.equal(vf.lookup('api1.school.test', '/WW_verify_54wuPnLpuTWkAF0Z.txt')?.toString(), '54wuPnLpuTWkAF0Z');
  t.equal(vf.lookup('api1.school.test', '/MP_verify_AbC123.txt')?.toString(), 'AbC123');
  t.equal(vf.lookup('api1.school.test', '/baidu_verify_code-x.html')?.toString(), 'baidu');
  t.equal(await gauge(s.metrics), 3, 'gauge counts loaded files');
});

t.test('verify-files: ignores other names, subdirectories, oversize files and special files when loading', async (t) => {
  const s = sandbox(t);
  const w = (name: string, body: string | Buffer = 'x') => writeFileSync(path.join(s.dir, name), body);
  w('WW_verify_ok1.txt', 'ok');
  w('README.txt');
  w('WW_verify_.txt'); // no token
  w('WW_verify_a-b.txt'); // not alphanumeric
  w('WW_verify_abc.TXT');
  w('ww_verify_abc.txt'); // case matters: WeCom asks for WW_
  w('WW_verify_abc.txt.bak');
  w('.WW_verify_abc.txt');
  w('XX_verify_abc.txt');
  w('other.html'); // only served when listed in names
  mkdirSync(path.join(s.dir, 'WW_verify_isdir.txt'));
  mkdirSync(path.join(s.dir, 'sub'));
  writeFileSync(path.join(s.dir, 'sub', 'WW_verify_insub.txt'), 'sub');
  w('WW_verify_big.txt', Buffer.alloc(MAX_FILE_BYTES + 1, 0x61));
  w('WW_verify_max.txt', Buffer.alloc(MAX_FILE_BYTES, 0x62));
  execFileSync('mkfifo', [path.join(s.dir, 'WW_verify_fifo.txt')]); // would hang a blocking open
  const vf = await s.open();
  t.equal(vf.size, 2, 'only the matching regular files within the size cap');
  t.ok(vf.lookup('h', '/WW_verify_ok1.txt'));
  t.equal(vf.lookup('h', '/WW_verify_max.txt')?.length, MAX_FILE_BYTES, 'a file of exactly the cap is served');
  for (const p of [
    '/README.txt',
    '/other.html',
    '/WW_verify_.txt',
    '/WW_verify_a-b.txt',
    '/WW_verify_abc.TXT',
    '/ww_verify_abc.txt',
    '/WW_verify_abc.txt.bak',
    '/.WW_verify_abc.txt',
    '/XX_verify_abc.txt',
    '/WW_verify_isdir.txt',
    '/sub/WW_verify_insub.txt',
    '/WW_verify_insub.txt',
    '/WW_verify_big.txt',
    '/WW_verify_fifo.txt',
  ]) {
    t.equal(vf.lookup('h', p), undefined, `${p} is not served`);
  }
  const warn = s.lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'some verification files were not loaded');
  t.ok(warn, 'skipped files are reported');
  t.same(warn.skipped.map((x: { name: string }) => x.name).sort(), ['WW_verify_big.txt', 'WW_verify_fifo.txt', 'WW_verify_isdir.txt']);
});

t.test('verify-files: follows a symlink only when it resolves inside the directory', async (t) => {
  const s = sandbox(t);
  // Kubernetes ConfigMap layout: name -> ..data/name, ..data -> ..2026_01_01/
  mkdirSync(path.join(s.dir, '..2026_01_01'));
  writeFileSync(path.join(s.dir, '..2026_01_01', 'WW_verify_k8s.txt'), 'k8s');
  symlinkSync('..2026_01_01', path.join(s.dir, '..data'));
  symlinkSync('..data/WW_verify_k8s.txt', path.join(s.dir, 'WW_verify_k8s.txt'));
  writeFileSync(path.join(s.dir, 'WW_verify_real.txt'), 'real');
  symlinkSync(path.join(s.dir, 'WW_verify_real.txt'), path.join(s.dir, 'WW_verify_abs.txt'));
  // Outside: a matching name in the parent, /etc/passwd, a dangling link, a link to a directory.
  writeFileSync(path.join(s.base, 'WW_verify_outside.txt'), 'OUTSIDE-SECRET');
  symlinkSync('../WW_verify_outside.txt', path.join(s.dir, 'WW_verify_out1.txt'));
  symlinkSync(path.join(s.base, 'WW_verify_outside.txt'), path.join(s.dir, 'WW_verify_out2.txt'));
  symlinkSync('/etc/passwd', path.join(s.dir, 'WW_verify_passwd.txt'));
  symlinkSync('nowhere.txt', path.join(s.dir, 'WW_verify_dangling.txt'));
  symlinkSync('..2026_01_01', path.join(s.dir, 'WW_verify_todir.txt'));
  // A link inside that hops outside through another link.
  symlinkSync('..', path.join(s.dir, 'up'));
  symlinkSync('up/WW_verify_outside.txt', path.join(s.dir, 'WW_verify_hop.txt'));
  const vf = await s.open();
  t.equal(vf.lookup('h', '/WW_verify_k8s.txt')?.toString(), 'k8s', 'ConfigMap-style link served');
  t.equal(vf.lookup('h', '/WW_verify_abs.txt')?.toString(), 'real', 'absolute link into the directory served');
  for (const n of ['out1', 'out2', 'passwd', 'dangling', 'todir', 'hop']) {
    t.equal(vf.lookup('h', `/WW_verify_${n}.txt`), undefined, `WW_verify_${n}.txt not served`);
  }
  t.equal(vf.size, 3, 'k8s, real and abs');
  t.notOk(
    s.lines.some((l) => l.includes('OUTSIDE-SECRET')),
    'outside content never logged',
  );
});

t.test('verify-files: returns the exact bytes when files have no newline, CRLF, a BOM or binary', async (t) => {
  const s = sandbox(t);
  const bodies: Record<string, Buffer> = {
    WW_verify_nonl: Buffer.from('54wuPnLpuTWkAF0Z'),
    WW_verify_crlf: Buffer.from('line1\r\nline2\r\n'),
    WW_verify_lf: Buffer.from('token\n'),
    MP_verify_bom: Buffer.from([0xef, 0xbb, 0xbf, 0x61, 0x62]),
    MP_verify_bin: Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80, 0x00]),
    WW_verify_empty: Buffer.alloc(0),
  };
  for (const [n, b] of Object.entries(bodies)) writeFileSync(path.join(s.dir, `${n}.txt`), b);
  const vf = await s.open();
  for (const [n, b] of Object.entries(bodies)) {
    const got = vf.lookup('h', `/${n}.txt`);
    t.ok(got && Buffer.compare(got, b) === 0, `${n}: identical bytes`);
  }
});

t.test('verify-files: serves only allowed hosts when hosts are configured', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.dir, 'WW_verify_h1.txt'), 'h1');
  const vf = await s.open({ hosts: ['api1.school.test', '*.api2.school.test', 'API3.School.Test.'] });
  const hit = ['api1.school.test', 'API1.school.test', 'api1.school.test.', 'x.api2.school.test', 'api3.school.test'];
  const miss = [
    'api2.school.test',
    'a.b.api2.school.test',
    'xapi2.school.test',
    '.api2.school.test',
    'api1.school.test.evil.test',
    'xapi1.school.test',
    'evil.test',
    '',
    'api1.school.test:443',
  ];
  for (const h of hit) t.ok(vf.lookup(h, '/WW_verify_h1.txt'), `served on ${h}`);
  for (const h of miss) t.equal(vf.lookup(h, '/WW_verify_h1.txt'), undefined, `not served on ${JSON.stringify(h)}`);
  const all = await s.open({ hosts: [] });
  t.ok(all.lookup('anything.example', '/WW_verify_h1.txt'), 'empty hosts = every host');
});

t.test('verify-files: loads at most MAX_FILES files when the directory holds more', async (t) => {
  const s = sandbox(t);
  for (let i = 0; i < MAX_FILES + 5; i++) writeFileSync(path.join(s.dir, `WW_verify_f${String(i).padStart(4, '0')}.txt`), `${i}`);
  const vf = await s.open();
  t.equal(vf.size, MAX_FILES);
  t.ok(vf.lookup('h', '/WW_verify_f0000.txt'), 'first by name kept');
  t.equal(vf.lookup('h', `/WW_verify_f${String(MAX_FILES + 4).padStart(4, '0')}.txt`), undefined, 'beyond the cap ignored');
  t.ok(
    s.lines.some((l) => l.includes('too many verification files')),
    'warned',
  );
});

t.test('verify-files: logs loaded names at info and never file contents when starting', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.dir, 'WW_verify_logme.txt'), 'CONTENT-SENTINEL-1');
  writeFileSync(path.join(s.dir, 'MP_verify_logme2.txt'), 'CONTENT-SENTINEL-2');
  await s.open();
  const loaded = s.lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'verification files loaded');
  t.equal(loaded?.level, 'info');
  t.same(loaded?.files, ['MP_verify_logme2.txt', 'WW_verify_logme.txt']);
  t.equal(loaded?.count, 2);
  t.notOk(
    s.lines.some((l) => l.includes('CONTENT-SENTINEL')),
    'contents not logged',
  );
});

t.test('verify-files: rejects with VerifyFilesError when the directory is missing or not a directory at start', async (t) => {
  const s = sandbox(t);
  await t.rejects(s.open({ dir: path.join(s.base, 'nope') }), VerifyFilesError);
  await t.rejects(s.open({ dir: path.join(s.base, 'nope'), watch: true }), { name: 'VerifyFilesError', code: 'ENOENT' });
  writeFileSync(path.join(s.base, 'afile'), 'x');
  await t.rejects(s.open({ dir: path.join(s.base, 'afile') }), { name: 'VerifyFilesError', code: 'ENOTDIR' });
});

t.test('verify-files: ignores a configured name when it is not a plain file name', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.base, 'secret.txt'), 'OUTSIDE');
  const vf = await s.open({ names: ['..', '.', '../secret.txt', 'a/b', ''] });
  t.equal(vf.size, 0);
  for (const p of ['/..', '/.', '/../secret.txt', '/a/b', '/']) t.equal(vf.lookup('h', p), undefined, `${p} misses`);
});
