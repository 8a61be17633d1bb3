/**
 * `wegate wecom queue list|redrive`: the callback queue of a running wegate, through its admin
 * listener (the state store is locked exclusively by the running process, so the CLI never opens
 * the database itself). The admin address comes from the config (`admin.listen`) or `--admin`.
 *
 *   wegate wecom queue list --config /etc/wegate/wegate.yaml [--app ecard-callback] [--state dead]
 *   wegate wecom queue redrive --config /etc/wegate/wegate.yaml --app ecard-callback   (every dead letter of it)
 *   wegate wecom queue redrive --config /etc/wegate/wegate.yaml --id 42
 *
 * Exit: 0 done, 1 the gateway did not answer or refused, 2 usage error, 78 the config is invalid.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { formatProblems, loadConfigFile } from '../config/load.ts';
import { parseListenAddress } from '../core/addresses.ts';
import { EXIT_CONFIG } from '../core/errors.ts';

export const QUEUE_USAGE = `wegate wecom queue — list and re-drive the callback queue of the running wegate (查看并重新投递运行中 wegate 的回调队列)

Usage / 用法:
  wegate wecom queue list --config FILE [--app NAME] [--state pending|dead] [--json]
  wegate wecom queue redrive --config FILE (--app NAME | --id N)

  --app NAME        a wecom.callbacks entry (list: only its items; redrive: all of its dead letters)
  --id N            one dead letter by its id (from list)
  --admin HOST:PORT the admin listener, when not the config's admin.listen

It talks to the admin listener of the running gateway (the state store is locked by it).
通过运行中网关的管理端口操作（状态存储由运行中的进程独占）。
Exit codes: 0 done, 1 the gateway did not answer or refused, 2 usage error, 78 invalid configuration.
`;

export interface QueueCliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
}

interface Listed {
  callbacks: { callback: string; depth: number; oldestAgeSeconds: number; deadLetters: number }[];
  items: {
    id: number;
    callback: string;
    event: string;
    state: string;
    attempts: number;
    ageSeconds: number;
    lastError: string | null;
    deadReason: string | null;
  }[];
}

export async function runWecomQueue(argv: readonly string[], io: QueueCliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        app: { type: 'string' },
        id: { type: 'string' },
        state: { type: 'string' },
        admin: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    io.err(`wegate wecom queue: ${(e as Error).message}\n\n${QUEUE_USAGE}`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  if (v.help) {
    io.out(QUEUE_USAGE);
    return 0;
  }
  const verb = positionals[0];
  if ((verb !== 'list' && verb !== 'redrive') || positionals.length > 1) {
    io.err(`wegate wecom queue: expected list or redrive\n\n${QUEUE_USAGE}`);
    return 2;
  }
  if (verb === 'redrive' && (v.app === undefined) === (v.id === undefined)) {
    io.err(`wegate wecom queue redrive: give exactly one of --app or --id\n\n${QUEUE_USAGE}`);
    return 2;
  }
  let admin = v.admin;
  if (admin === undefined) {
    if (v.config === undefined) {
      io.err(`wegate wecom queue: --config FILE (or --admin HOST:PORT) is required\n\n${QUEUE_USAGE}`);
      return 2;
    }
    const file = resolve(v.config);
    const r = await loadConfigFile(file);
    if (!r.ok) {
      io.err(`${formatProblems(file, r.problems)}\n`);
      return EXIT_CONFIG;
    }
    admin = r.config.admin.listen;
  }
  const addr = parseListenAddress(admin);
  if (!addr.ok || addr.value.port === 0) {
    io.err(`wegate wecom queue: the admin address ${JSON.stringify(admin)} has no fixed port: give --admin HOST:PORT\n`);
    return 2;
  }
  const h = addr.value.wildcard || addr.value.host === undefined ? '127.0.0.1' : addr.value.host;
  const origin = `http://${h.includes(':') ? `[${h}]` : h}:${addr.value.port}`;
  const q = new URLSearchParams();
  if (v.app !== undefined) q.set('app', v.app);
  if (verb === 'list' && v.state !== undefined) q.set('state', v.state);
  if (verb === 'redrive' && v.id !== undefined) q.set('id', v.id);
  const agent = new Agent({ connect: { timeout: 2_000 } });
  try {
    const res = await request(`${origin}/callbacks/queue${verb === 'redrive' ? '/redrive' : ''}?${q}`, {
      dispatcher: agent,
      method: verb === 'list' ? 'GET' : 'POST',
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const body = await res.body.text();
    if (res.statusCode !== 200) {
      io.err(
        res.statusCode === 404
          ? `wegate wecom queue: the gateway at ${origin} has no callback queue (no state store or no callbacks) / 该网关没有回调队列\n`
          : `wegate wecom queue: ${origin} answered ${res.statusCode}: ${body.trim()}\n`,
      );
      return 1;
    }
    if (verb === 'redrive') {
      const n = (JSON.parse(body) as { redriven: number }).redriven;
      io.out(`${n} dead letter(s) re-driven (已重新投递 ${n} 条死信)\n`);
      return 0;
    }
    if (v.json) {
      io.out(body);
      return 0;
    }
    const l = JSON.parse(body) as Listed;
    for (const c of l.callbacks) {
      io.out(`${c.callback}: ${c.depth} queued (排队), oldest ${c.oldestAgeSeconds} s, ${c.deadLetters} dead letter(s) (死信)\n`);
    }
    for (const i of l.items) {
      const why = i.state === 'dead' ? (i.deadReason ?? '') : (i.lastError ?? '');
      io.out(`  #${i.id} ${i.callback} ${i.event} ${i.state} attempts=${i.attempts} age=${i.ageSeconds}s${why ? ` ${why}` : ''}\n`);
    }
    if (l.callbacks.length === 0) io.out('queue empty (队列为空)\n');
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    io.err(
      `wegate wecom queue: no answer from the admin listener at ${origin} (${err.code ?? err.message}): is wegate running? / 管理端口无应答：wegate 是否在运行？\n`,
    );
    return 1;
  } finally {
    await agent.close();
  }
}
