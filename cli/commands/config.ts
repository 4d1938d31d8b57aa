import { dirname } from 'node:path';
import { Option, type Command } from 'commander';
import { CommonErrors } from '../../common/errors.js';

export type ConfigKind = 'agent' | 'gateway';

// Top-level keys only one of the two files has; shared ones (id, dataDir, logLevel, limits) say nothing.
const KEYS_OF: Record<ConfigKind, readonly string[]> = {
  agent: ['buffer', 'intake', 'push', 'pull'],
  gateway: ['http', 'mqtt', 'auth', 'pipeline', 'storage', 'pullFrom', 'alerts', 'commit'],
};

/** Which file a config is, judged by its top-level keys; undefined when they do not tell. */
export function guessConfigKind(raw: unknown): { kind: ConfigKind; keys: string[] } | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const present = Object.keys(raw);
  const agent = present.filter((key) => KEYS_OF.agent.includes(key));
  const gateway = present.filter((key) => KEYS_OF.gateway.includes(key));
  if (agent.length > gateway.length) return { kind: 'agent', keys: agent };
  if (gateway.length > agent.length) return { kind: 'gateway', keys: gateway };
  return undefined;
}

export function register(program: Command): void {
  const config = program.command('config').description('work with config files');
  config
    .command('check')
    .description('validate a config file; lists every error with its path and exits 1 when there is one')
    .argument('<file>', 'agent or gateway config (YAML or JSON)')
    .addOption(new Option('--type <type>', 'which config it is (default: guessed from its keys)').choices(['agent', 'gateway']))
    .action(async (file: string, options: { type?: ConfigKind }) => {
      await check(file, options.type);
    });
}

async function check(file: string, type: ConfigKind | undefined): Promise<void> {
  const { readConfigFile } = await import('../../common/config/load.js');
  const raw = await readConfigFile(file);
  let kind = type;
  if (kind === undefined) {
    const guess = guessConfigKind(raw);
    if (guess === undefined) {
      throw CommonErrors.METEORZX_USAGE(`cannot tell whether ${file} is an agent or a gateway config; pass --type agent or --type gateway`, {
        userError: true,
      });
    }
    kind = guess.kind;
    process.stderr.write(`meteorzx: assuming ${file} is ${kind === 'agent' ? 'an agent' : 'a gateway'} config (it has ${guess.keys.join(', ')}); pass --type to choose\n`);
  }
  const options = { source: file, baseDir: dirname(file) };
  const { checkTlsFiles } = await import('../../common/tls-server.js');
  const warn = (message: string): void => void process.stderr.write(`meteorzx: warning: ${message}\n`);
  if (kind === 'agent') {
    const { parseAgentConfig, agentTlsSections } = await import('../../agent/config.js');
    await checkTlsFiles(agentTlsSections(parseAgentConfig(raw, options)), { warn });
  } else {
    const { parseGatewayConfig, gatewayTlsSections } = await import('../../gateway/config.js');
    await checkTlsFiles(gatewayTlsSections(parseGatewayConfig(raw, options)), { warn });
  }
  process.stdout.write(`${file}: valid ${kind} config\n`);
}
