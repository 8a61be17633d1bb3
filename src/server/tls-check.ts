/**
 * Certificate warnings for `wegate check` and the `serve` log (start-up and each reload, src/cli):
 * problems that do not make a config invalid but break clients — a certificate in the file (leaf or
 * intermediate) that is expired, not yet valid or about to expire, a leaf that covers none of the
 * route hosts or names its host only in the CN (no subjectAltName: Chrome and Android WebView refuse
 * it), and a file that holds only the leaf (cert.pem instead of fullchain.pem: desktop browsers fetch
 * the missing intermediate themselves, WeChat's in-app browser on Android does not and fails).
 * Pure: files, clock and trusted roots are handed in.
 */
import { X509Certificate } from 'node:crypto';
import { isIpLiteral } from '../core/addresses.ts';
import { certificateNames } from './tls.ts';

/** Warn this many days before a certificate expires (Let's Encrypt renews at 30 days left). */
export const EXPIRY_WARNING_DAYS = 14;

const DAY_MS = 86_400_000;

export interface CertFileToCheck {
  /** Config key path, "tls.certs[0].cert". */
  readonly at: string;
  readonly file: string;
  /** The file's content (PEM, leaf first). */
  readonly pem: string | Buffer;
}

export interface CertCheckOptions {
  /** Route hosts as configured (normalised; "*.x" for wildcards). Routes without a host are left out. */
  readonly hosts: readonly string[];
  readonly now: number;
  /** PEM root certificates a client may know (tls.getCACertificates('default')); parsed only when needed. */
  readonly roots: () => readonly string[];
}

const PEM_RE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

const when = (d: Date) => `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;

/** Does a certificate with these names serve some host of the wildcard route `*.suffix`? */
function coversWildcard(names: readonly string[], suffix: string): boolean {
  return names.some((n) => {
    if (n === `*.${suffix}`) return true;
    if (!n.endsWith(`.${suffix}`)) return false;
    const label = n.slice(0, -suffix.length - 1);
    return label !== '' && !label.includes('.') && label !== '*';
  });
}

function covers(x509: X509Certificate, names: readonly string[], host: string): boolean {
  if (host.startsWith('*.')) return coversWildcard(names, host.slice(2));
  return isIpLiteral(host) ? x509.checkIP(host) !== undefined : x509.checkHost(host) !== undefined;
}

/** Issued by `issuer`: names and key identifiers agree and the signature verifies. */
const issuedBy = (cert: X509Certificate, issuer: X509Certificate) => cert.checkIssued(issuer) && cert.verify(issuer.publicKey);

/** One line per problem found, each in English and 简体中文, prefixed with the key path and file. */
export function checkCertificateFiles(files: readonly CertFileToCheck[], opts: CertCheckOptions): string[] {
  const out: string[] = [];
  let roots: X509Certificate[] | undefined;
  const trustedIssuer = (leaf: X509Certificate) => {
    roots ??= opts.roots().flatMap((pem) => {
      try {
        return [new X509Certificate(pem)];
      } catch {
        return [];
      }
    });
    return roots.some((r) => r.subject === leaf.issuer && issuedBy(leaf, r));
  };

  for (const f of files) {
    const chain: X509Certificate[] = [];
    for (const pem of String(f.pem).match(PEM_RE) ?? []) {
      try {
        chain.push(new X509Certificate(pem));
      } catch {
        // Config loading already refused a file whose first certificate does not parse.
      }
    }
    const leaf = chain[0];
    if (leaf === undefined) continue;
    const names = certificateNames(leaf);
    const what = `the certificate for ${names.slice(0, 3).join(', ') || leaf.subject.replace(/\n/g, ', ')}${names.length > 3 ? ', …' : ''}`;
    const warn = (en: string, zh: string) => out.push(`${f.at} (${JSON.stringify(f.file)}): ${en} (${zh})`);

    // Every certificate of the file: an expired intermediate fails the handshake like an expired leaf.
    chain.forEach((c, i) => {
      const which = i === 0 ? what : `the intermediate certificate ${i} (${c.subject.replace(/\n/g, ', ')}) of ${what}`;
      const zhWhich = i === 0 ? '证书' : `中间证书 ${i}（${c.subject.replace(/\n/g, ', ')}）`;
      const notAfter = c.validToDate.getTime();
      const notBefore = c.validFromDate.getTime();
      if (notAfter <= opts.now) {
        warn(`${which} expired on ${when(c.validToDate)}; renew it`, `${zhWhich}已于 ${when(c.validToDate)} 过期，请续期`);
      } else if (notAfter - opts.now < EXPIRY_WARNING_DAYS * DAY_MS) {
        const days = Math.ceil((notAfter - opts.now) / DAY_MS);
        warn(
          `${which} expires in ${days} ${days === 1 ? 'day' : 'days'}, on ${when(c.validToDate)}; renew it`,
          `${zhWhich}将在 ${days} 天后（${when(c.validToDate)}）过期，请续期`,
        );
      }
      if (notBefore > opts.now) {
        warn(`${which} is not valid before ${when(c.validFromDate)}`, `${zhWhich}在 ${when(c.validFromDate)} 之前尚未生效`);
      }
    });

    // Chrome (since 58) and Android WebView ignore the CN: a leaf without subjectAltName matches no host.
    if (leaf.subjectAltName === undefined) {
      warn(
        `${what} has no subjectAltName (its host is only in the CN): Chrome and Android WebView refuse it; reissue it with the host names as DNS SANs`,
        '证书没有 subjectAltName（域名只在 CN 中）：Chrome 与安卓 WebView 会拒绝，请重新签发并把域名写入 SAN',
      );
    }

    if (opts.hosts.length > 0 && !opts.hosts.some((h) => covers(leaf, names, h))) {
      const shown = opts.hosts.slice(0, 5).join(', ') + (opts.hosts.length > 5 ? ', …' : '');
      warn(
        `${what} covers none of the route hosts (${shown}): clients connecting to them will refuse it`,
        `证书不包含任何路由域名，客户端会拒绝连接`,
      );
    }

    const selfSigned = leaf.subject === leaf.issuer && issuedBy(leaf, leaf);
    if (!selfSigned && !chain.slice(1).some((c) => issuedBy(leaf, c)) && !trustedIssuer(leaf)) {
      warn(
        `${what} is not followed by the intermediate certificate that issued it (${leaf.issuer.replace(/\n/g, ', ')}): ` +
          "use the full chain (fullchain.pem, not cert.pem), or WeChat's in-app browser on Android cannot connect",
        '缺少中间证书：请使用完整证书链 fullchain.pem（而不是 cert.pem），否则安卓微信内置浏览器无法打开',
      );
    }
  }
  return out;
}
