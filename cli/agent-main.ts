// First, for its effect: a SIGTERM or SIGHUP while the rest loads is held, not fatal (cli/held-signals.ts).
import './hold-startup.js';
import { dirname } from 'node:path';
import { Command } from 'commander';
import pkg from '../package.json' with { type: 'json' };
import * as agent from './commands/agent.js';
import * as send from './commands/send.js';
import * as status from './commands/status.js';
import { runCli } from './run.js';

/**
 * Entry of the agent bundle (`meteorzx-agent`, packaging/bundle.mjs): the
 * agent-side commands only, so esbuild never reaches the gateway's code or
 * dependencies (fastify, cel-js). Kept out on purpose:
 * `config check` of cli/commands/config.ts also knows gateway configs, so
 * it would pull gateway/config.ts and cel-js in; an agent-only check is
 * registered below instead. `send` (to the local intake or a gateway) and
 * `status` (this agent's, or a gateway's) need only their HTTP client
 * (cli/gateway-client.ts, undici and common/), so they ship too.
 */
function buildAgentProgram(): Command {
  const program = new Command('meteorzx-agent')
    .description('MeteorZX edge agent: local intake → durable buffer → push to the gateway, plus the status and pull API.')
    .version(pkg.version, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand(false)
    .showSuggestionAfterError(true);
  agent.register(program);
  send.register(program);
  status.register(program);
  program
    .command('config')
    .description('work with config files')
    .command('check')
    .description('validate an agent config file; lists every error with its path and exits 1 when there is one')
    .argument('<file>', 'agent config (YAML or JSON)')
    .action(async (file: string) => {
      const [{ readConfigFile }, { parseAgentConfig, agentTlsSections }, { checkTlsFiles }] = await Promise.all([
        import('../common/config/load.js'),
        import('../agent/config.js'),
        import('../common/tls-server.js'),
      ]);
      const warn = (message: string): void => void process.stderr.write(`meteorzx: warning: ${message}\n`);
      await checkTlsFiles(agentTlsSections(parseAgentConfig(await readConfigFile(file), { source: file, baseDir: dirname(file) })), { warn });
      process.stdout.write(`${file}: valid agent config\n`);
    });
  return program;
}

process.exitCode = await runCli(buildAgentProgram(), process.argv);
