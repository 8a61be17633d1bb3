/**
 * Traversal and encoding corpus against lookup(). The lookup is an exact Map get on the raw path, so
 * everything except the exact "/" + name must miss; the HTTP side (404, never 500) is tested with the
 * server.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { sandbox } from './helpers.ts';

const NAME = 'WW_verify_abc123.txt';
const INSIDE = 'INSIDE-abc123';
const OUTSIDE = 'OUTSIDE-SECRET';

const corpus = [
  // dot-segments, plain and encoded
  '/../WW_verify_out1.txt',
  '/%2e%2e/WW_verify_out1.txt',
  '/%2E%2E/WW_verify_out1.txt',
  '/.%2e/WW_verify_out1.txt',
  '/%2e./WW_verify_out1.txt',
  '/..%2fWW_verify_out1.txt',
  '/..%2FWW_verify_out1.txt',
  '/%2e%2e%2fWW_verify_out1.txt',
  '/verify/../WW_verify_out1.txt',
  '/../verify/WW_verify_abc123.txt',
  '/x/../WW_verify_abc123.txt',
  '/x/%2e%2e/WW_verify_abc123.txt',
  // double encoding
  '/%252e%252e/WW_verify_out1.txt',
  '/%252e%252e%252fWW_verify_out1.txt',
  '/%25%32%65%25%32%65/WW_verify_out1.txt',
  // backslashes, raw and encoded
  '/..\\WW_verify_out1.txt',
  '\\WW_verify_abc123.txt',
  '/\\WW_verify_abc123.txt',
  '/%5c..%5cWW_verify_out1.txt',
  '/%5CWW_verify_abc123.txt',
  '/..%5cWW_verify_out1.txt',
  // NUL
  `/${NAME}%00`,
  `/${NAME}%00.png`,
  `/${NAME}\u0000`,
  '/%00/../WW_verify_out1.txt',
  // overlong / invalid UTF-8 for "." and "/"
  '/%c0%ae%c0%ae/WW_verify_out1.txt',
  '/%c0%ae%c0%ae%c0%afWW_verify_out1.txt',
  '/%e0%80%ae%e0%80%ae/WW_verify_out1.txt',
  '/%c0%2e%c0%2e/WW_verify_out1.txt',
  '/%uff0e%uff0e/WW_verify_out1.txt',
  '/\uff0e\uff0e/WW_verify_out1.txt',
  // trailing characters and path parameters
  `/${NAME}/`,
  `/${NAME};`,
  `/${NAME};.js`,
  `/${NAME};jsessionid=1`,
  `/${NAME}.`,
  `/${NAME}%20`,
  `/${NAME} `,
  `/${NAME}#`,
  `/${NAME}?`,
  `/${NAME}?x=1`,
  `/${NAME}/.`,
  `/${NAME}/..`,
  `/${NAME}%2f`,
  `/${NAME}::$DATA`,
  // case variants
  '/ww_verify_abc123.txt',
  '/WW_VERIFY_abc123.txt',
  '/WW_verify_ABC123.txt',
  '/WW_verify_abc123.TXT',
  '/Ww_verify_abc123.txt',
  // dot and slash prefixes
  `/./${NAME}`,
  `/%2e/${NAME}`,
  `//${NAME}`,
  `///${NAME}`,
  `/.//${NAME}`,
  `/verify/${NAME}`,
  `/sub/${NAME}`,
  // other encodings of the exact name
  '/%57W_verify_abc123.txt',
  '/WW%5fverify_abc123.txt',
  '/WW_verify_abc123%2etxt',
  '/WW_verify_abc123%2Etxt',
  '/%57%57%5f%76%65%72%69%66%79%5f%61%62%63%31%32%33%2e%74%78%74',
  // not origin-form
  NAME,
  `http://api1.school.test/${NAME}`,
  '*',
  '',
  '/',
  '/.',
  '/..',
  // subdirectory and outside names
  '/WW_verify_insub.txt',
  '/sub/WW_verify_insub.txt',
  '/WW_verify_out1.txt',
  '/secret.txt',
  '/../secret.txt',
  '/%2e%2e/secret.txt',
];

t.test('verify-files: every traversal or encoding variant misses when looked up', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.dir, NAME), INSIDE);
  mkdirSync(path.join(s.dir, 'sub'));
  writeFileSync(path.join(s.dir, 'sub', 'WW_verify_insub.txt'), OUTSIDE);
  // Files outside the directory, one with a name that would match.
  writeFileSync(path.join(s.base, 'WW_verify_out1.txt'), OUTSIDE);
  writeFileSync(path.join(s.base, 'secret.txt'), OUTSIDE);
  const vf = await s.open({ names: ['secret.txt'] });
  t.equal(vf.size, 1, 'only the file inside the directory');
  t.equal(vf.lookup('api1.school.test', `/${NAME}`)?.toString(), INSIDE, 'control: the exact path is served');
  for (const host of ['api1.school.test', 'localhost']) {
    for (const p of corpus) {
      t.equal(vf.lookup(host, p), undefined, `${JSON.stringify(p)} misses`);
    }
  }
});

t.test('verify-files: a matching file name outside the directory is never returned when probed by any path', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.base, 'WW_verify_out1.txt'), OUTSIDE);
  writeFileSync(path.join(s.dir, NAME), INSIDE);
  const vf = await s.open({ names: ['WW_verify_out1.txt'] });
  // Whatever the path, the only bytes lookup can ever hand out are the inside file's.
  const variants = [...corpus, '/WW_verify_out1.txt', `/${NAME}`];
  for (const p of variants) {
    const got = vf.lookup('h', p);
    if (got !== undefined) t.equal(got.toString(), INSIDE, `${JSON.stringify(p)} returns only inside bytes`);
    t.not(got?.toString(), OUTSIDE, `${JSON.stringify(p)} never returns outside bytes`);
  }
  t.equal(vf.lookup('h', '/WW_verify_out1.txt'), undefined, 'listed name that is not in the directory misses');
});
