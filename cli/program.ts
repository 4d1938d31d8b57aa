import { Command } from 'commander';
import pkg from '../package.json' with { type: 'json' };
import * as agent from './commands/agent.js';
import * as config from './commands/config.js';
import * as gateway from './commands/gateway.js';
import * as pull from './commands/pull.js';
import * as query from './commands/query.js';
import * as send from './commands/send.js';
import * as status from './commands/status.js';
import * as verify from './commands/verify.js';

/**
 * The commands of `meteorzx`, one file each in commands/. Each file only
 * registers its options; its action loads what it needs with import(), so
 * `meteorzx agent` never loads the gateway's dependencies. To add a command,
 * write commands/<name>.ts exporting `register(program)` and list it here.
 */
const COMMANDS: readonly { register(program: Command): void }[] = [gateway, agent, send, pull, query, verify, status, config];

export function buildProgram(): Command {
  const program = new Command('meteorzx')
    .description('Audit events from edge to gateway: delivered, stored once, with proof none was lost or altered.')
    .version(pkg.version, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand(false)
    .showSuggestionAfterError(true);
  for (const command of COMMANDS) command.register(program);
  return program;
}
