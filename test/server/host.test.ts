/** checkHost: exactly one well-formed Host header, normalised for routing. */
import t from 'tap';
import { checkHost } from '../../src/server/host.ts';

t.test('host: accepts and normalises the value when it is well formed', async (t) => {
  const cases: [string, string, string][] = [
    ['api1.school.edu.cn', 'api1.school.edu.cn', 'api1.school.edu.cn'],
    ['API1.School.EDU.cn:8443', 'api1.school.edu.cn', 'api1.school.edu.cn:8443'],
    ['api1.school.edu.cn.', 'api1.school.edu.cn', 'api1.school.edu.cn.'],
    ['127.0.0.1:80', '127.0.0.1', '127.0.0.1:80'],
    ['[::1]:8080', '[::1]', '[::1]:8080'],
    ['[2001:db8::1]', '[2001:db8::1]', '[2001:db8::1]'],
    ['localhost', 'localhost', 'localhost'],
    ['under_score.test', 'under_score.test', 'under_score.test'],
  ];
  for (const [value, host, authority] of cases) {
    t.same(checkHost(['Host', value]), { ok: true, host, authority }, value);
  }
});

t.test('host: refuses with a reason when the value is missing, duplicate or malformed', async (t) => {
  const cases: [string, string[], string][] = [
    ['no Host', ['Accept', '*/*'], 'missing'],
    ['empty Host', ['Host', ''], 'missing'],
    ['two Host headers', ['Host', 'a.test', 'Accept', '*/*', 'host', 'a.test'], 'duplicate'],
    ['path', ['Host', 'a.com/\\:552'], 'malformed'],
    ['userinfo', ['Host', 'evil@good.test'], 'malformed'],
    ['two ports', ['Host', 'a:9000:80'], 'malformed'],
    ['letters in port', ['Host', 'a.test:8o'], 'malformed'],
    ['port 0', ['Host', 'a.test:0'], 'malformed'],
    ['port 65536', ['Host', 'a.test:65536'], 'malformed'],
    ['six-digit port', ['Host', 'a.test:123456'], 'malformed'],
    ['empty port', ['Host', 'a.test:'], 'malformed'],
    ['bad IPv6', ['Host', '[1:2:3:4:5:6:7:8:9]'], 'malformed'],
    ['unbracketed IPv6', ['Host', '::1'], 'malformed'],
    ['empty label', ['Host', 'a..test'], 'malformed'],
    ['leading dot', ['Host', '.a.test'], 'malformed'],
    ['leading hyphen', ['Host', '-a.test'], 'malformed'],
    ['percent-encoding', ['Host', 'a%2etest'], 'malformed'],
    ['non-ASCII', ['Host', 'ä.test'], 'malformed'],
    ['label of 64 characters', ['Host', `${'a'.repeat(64)}.test`], 'malformed'],
    ['too long', ['Host', `${'a.'.repeat(140)}test`], 'malformed'],
  ];
  for (const [name, raw, reason] of cases) t.same(checkHost(raw), { ok: false, reason }, name);
});
