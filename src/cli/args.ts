/**
 * Command-line parsing (pure: no process access, so it is testable). `main.ts` feeds it argv/env.
 */
import { parseArgs } from 'node:util';

export type Command =
  | { kind: 'serve' | 'check'; configFile: string }
  | { kind: 'doctor'; configFile: string; json: boolean }
  | { kind: 'schema' }
  | { kind: 'wecom-decrypt'; argv: readonly string[] }
  | { kind: 'wecom-queue'; argv: readonly string[] }
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'usage-error'; message: string };

/** Default config location for systemd/Docker installs; WEGATE_CONFIG overrides it. */
export const DEFAULT_CONFIG_FILE = '/etc/wegate/wegate.yaml';

export const USAGE = `wegate — reverse-proxy gateway for WeCom (企业微信) on your school's own domain

Usage / 用法:
  wegate serve  [--config FILE]   run the gateway                       运行网关
  wegate check  [--config FILE]   validate the configuration and exit   检查配置文件后退出
  wegate doctor [--config FILE] [--json]
                                  check this host, the upstreams and WeCom (企业可信IP) for real  实际检查本机、后端与企业微信
  wegate schema                   print the config JSON Schema (for editors)  输出配置文件的 JSON Schema
  wegate wecom decrypt …          check and decrypt a captured callback (see wegate wecom decrypt --help)  检查并解密抓取的回调请求
  wegate wecom queue list|redrive --config FILE [--app A] [--id N]
                                  the running gateway's callback queue (through its admin listener)  查看/重新投递回调队列
  wegate --help | --version

Options:
  -c, --config FILE   configuration file (default: $WEGATE_CONFIG or ${DEFAULT_CONFIG_FILE})
      --json          doctor: print the report as JSON (机器可读输出)

Signals: SIGHUP reloads the configuration, certificates and verification files (重新加载配置);
         SIGTERM/SIGINT drain and stop (优雅退出).
Exit codes: 0 ok, 1 runtime failure or a doctor check failed, 2 usage error, 78 invalid configuration (配置无效).
`;

/** Parse argv (without node and script) and the environment into a command. */
export function parseCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Command {
  // The wecom verbs parse their own options (cli/wecom-decrypt.ts).
  if (argv[0] === 'wecom') {
    if (argv[1] === 'decrypt') return { kind: 'wecom-decrypt', argv: argv.slice(2) };
    if (argv[1] === 'queue') return { kind: 'wecom-queue', argv: argv.slice(2) };
    return { kind: 'usage-error', message: `unknown wecom command "${argv[1] ?? ''}" (expected decrypt or queue)` };
  }
  let parsed: ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true; args: string[] }>>;
  const options = {
    config: { type: 'string', short: 'c' },
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
    json: { type: 'boolean' },
  } as const;
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true });
  } catch (e) {
    return { kind: 'usage-error', message: (e as Error).message };
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  const [verb, ...rest] = positionals;
  if (rest.length > 0) return { kind: 'usage-error', message: `unexpected argument "${rest[0]}"` };
  if (values.json && verb !== 'doctor') return { kind: 'usage-error', message: '--json is an option of doctor only' };
  const configFile = values.config ?? env.WEGATE_CONFIG ?? DEFAULT_CONFIG_FILE;
  switch (verb) {
    case 'serve':
    case 'check':
      return { kind: verb, configFile };
    case 'doctor':
      return { kind: 'doctor', configFile, json: values.json === true };
    case 'schema':
      return { kind: 'schema' };
    case 'help':
      return { kind: 'help' };
    case undefined:
      return { kind: 'usage-error', message: 'a command is required (serve, check, doctor, schema)' };
    default:
      return { kind: 'usage-error', message: `unknown command "${verb}" (expected serve, check, doctor, schema)` };
  }
}
