// First, for its effect: a SIGTERM or SIGHUP while the rest loads is held, not fatal (cli/held-signals.ts).
import './hold-startup.js';
import { buildProgram } from './program.js';
import { runCli } from './run.js';

process.exitCode = await runCli(buildProgram(), process.argv);
