/**
 * Checks of the egress profiles against this host, run by `wegate check`, at start-up and on
 * reload. A local address is tested by binding a socket to it, the only honest test: loopback
 * aliases (127.0.0.2 …) are local on Linux without appearing in os.networkInterfaces(), and an
 * address that is not on the host fails with EADDRNOTAVAIL, as every pinned request would.
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { HostProblem } from '../config/load.ts';
import type { Config } from '../config/schema.ts';

/** Bind a listening socket to `address` (port 0) and close it; resolves undefined when that works, else the errno code. */
export function probeLocalAddress(address: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    server.listen({ host: address, port: 0, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

const REASONS: Record<string, string> = {
  EADDRNOTAVAIL: 'it is not an address of this host (该地址不在本机任何网卡上)',
  EINVAL: 'the system refused it (an IPv6 link-local address needs a zone, e.g. fe80::1%eth0) (系统拒绝了该地址)',
  EACCES: 'permission denied (没有权限)',
};

/** "user:password" from a credentials file, or why it cannot be used (the content is never shown). */
export async function readProxyCredentials(
  file: string,
): Promise<{ ok: true; user: string; password: string } | { ok: false; reason: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'permission denied' : (code ?? 'cannot be read') };
  }
  const line = text.replace(/\r?\n$/, '');
  const colon = line.indexOf(':');
  if (colon <= 0 || /[\r\n]/.test(line)) return { ok: false, reason: 'must hold one line "user:password" (content hidden)' };
  return { ok: true, user: line.slice(0, colon), password: line.slice(colon + 1) };
}

/** Every egress problem only this host can reveal; empty when each profile can be used. */
export async function checkEgressHost(config: Pick<Config, 'egress'>): Promise<HostProblem[]> {
  const problems: HostProblem[] = [];
  for (const [name, p] of Object.entries(config.egress ?? {})) {
    if (p.local_address !== undefined) {
      const code = await probeLocalAddress(p.local_address);
      if (code !== undefined) {
        problems.push({
          at: ['egress', name, 'local_address'],
          message:
            `must be an address of this host (本机地址), got ${JSON.stringify(p.local_address)}: binding a socket to it failed with ${code}, ` +
            `${REASONS[code] ?? 'the address cannot be used (该地址不可用)'}; add it to a network interface or correct local_address ` +
            `(请先把该地址配置到网卡上，或改正 local_address)`,
        });
      }
    }
    const creds = p.proxy?.credentials_file;
    if (creds !== undefined) {
      const r = await readProxyCredentials(creds);
      if (!r.ok) {
        problems.push({
          at: ['egress', name, 'proxy', 'credentials_file'],
          message: `must be a readable file holding "user:password" (代理认证文件不可用), got ${JSON.stringify(creds)}: ${r.reason}`,
        });
      }
    }
  }
  return problems;
}
