/**
 * A real forward proxy for the egress tests: Debian's tinyproxy (/usr/bin/tinyproxy; CI installs
 * it), started in the foreground (-d) with a generated config on a free port of 127.0.0.1, its
 * outgoing connections bound to another loopback alias (`Bind`) so an upstream can tell traffic that
 * went through it. Optional Basic credentials (`BasicAuth`), the client addresses it serves (`Allow`)
 * and the ports it lets CONNECT reach (`ConnectPort`). Killed in teardown.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TINYPROXY = '/usr/bin/tinyproxy';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface ForwardProxyOptions {
  /** Source address of the proxy's outgoing connections (tinyproxy `Bind`). Default 127.0.0.3. */
  readonly bind?: string;
  /** Require these credentials (tinyproxy `BasicAuth`). */
  readonly auth?: { readonly user: string; readonly password: string };
  /** Client addresses served (tinyproxy `Allow`). Default 127.0.0.1, 127.0.0.2, 127.0.0.3. */
  readonly allow?: readonly string[];
  /** Ports CONNECT may reach besides 443 (tinyproxy `ConnectPort`). */
  readonly connectPorts: readonly number[];
}

export interface ForwardProxy {
  /** "http://127.0.0.1:<port>" */
  readonly url: string;
  readonly port: number;
  /** tinyproxy's own log (stdout + stderr). */
  readonly log: () => string;
}

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Start tinyproxy and wait until it accepts connections (bounded: 100 tries, 20 ms apart). */
export async function startForwardProxy(t: Teardown, opts: ForwardProxyOptions): Promise<ForwardProxy> {
  const dir = await mkdtemp(join(tmpdir(), 'wegate-tinyproxy-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const port = await freePort();
  const lines = [
    `Port ${port}`,
    'Listen 127.0.0.1',
    `Bind ${opts.bind ?? '127.0.0.3'}`,
    'Timeout 30',
    'MaxClients 50',
    'LogLevel Info',
    'DisableViaHeader Yes',
    ...(opts.allow ?? ['127.0.0.1', '127.0.0.2', '127.0.0.3']).map((a) => `Allow ${a}`),
    'ConnectPort 443',
    ...opts.connectPorts.map((p) => `ConnectPort ${p}`),
    ...(opts.auth ? [`BasicAuth ${opts.auth.user} ${opts.auth.password}`] : []),
  ];
  const conf = join(dir, 'tinyproxy.conf');
  await writeFile(conf, `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn(TINYPROXY, ['-d', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  const exited = once(child, 'exit');
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  });
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`tinyproxy exited with ${child.exitCode}:\n${log}`);
    if (await accepts(port)) return { url: `http://127.0.0.1:${port}`, port, log: () => log };
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`tinyproxy did not accept connections on ${port}:\n${log}`);
}
