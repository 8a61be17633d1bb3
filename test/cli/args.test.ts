import t from 'tap';
import { DEFAULT_CONFIG_FILE, parseCommand } from '../../src/cli/args.ts';

t.test('parseCommand: understands every command when arguments are valid', async (t) => {
  const cases: [name: string, argv: string[], env: Record<string, string>, expected: object][] = [
    ['serve with --config', ['serve', '--config', 'a.yaml'], {}, { kind: 'serve', configFile: 'a.yaml' }],
    ['check with -c', ['check', '-c', 'b.yaml'], {}, { kind: 'check', configFile: 'b.yaml' }],
    ['config from WEGATE_CONFIG', ['serve'], { WEGATE_CONFIG: '/x/w.yaml' }, { kind: 'serve', configFile: '/x/w.yaml' }],
    ['flag beats env', ['check', '--config=c.yaml'], { WEGATE_CONFIG: '/x/w.yaml' }, { kind: 'check', configFile: 'c.yaml' }],
    ['default file', ['check'], {}, { kind: 'check', configFile: DEFAULT_CONFIG_FILE }],
    ['doctor', ['doctor', '-c', 'd.yaml'], {}, { kind: 'doctor', configFile: 'd.yaml', json: false }],
    ['doctor --json', ['doctor', '--json'], {}, { kind: 'doctor', configFile: DEFAULT_CONFIG_FILE, json: true }],
    ['schema', ['schema'], {}, { kind: 'schema' }],
    ['--help', ['--help'], {}, { kind: 'help' }],
    ['help verb', ['help'], {}, { kind: 'help' }],
    ['--version', ['--version'], {}, { kind: 'version' }],
  ];
  for (const [name, argv, env, expected] of cases) t.same(parseCommand(argv, env), expected, name);
});

t.test('parseCommand: reports a usage error when arguments are wrong', async (t) => {
  const cases: [name: string, argv: string[], message: RegExp][] = [
    ['no command', [], /command is required/],
    ['unknown command', ['serv'], /unknown command "serv"/],
    ['unknown flag', ['serve', '--cnofig', 'x'], /Unknown option/i],
    ['extra positional', ['serve', 'x.yaml'], /unexpected argument "x.yaml"/],
    ['--config without value', ['serve', '--config'], /argument missing|requires|expects/i],
    ['--json outside doctor', ['check', '--json'], /--json is an option of doctor only/],
  ];
  for (const [name, argv, message] of cases) {
    const r = parseCommand(argv, {});
    t.equal(r.kind, 'usage-error', name);
    if (r.kind === 'usage-error') t.match(r.message, message, `${name}: message`);
  }
});
