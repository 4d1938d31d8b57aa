import { buildProgram } from './program.js';
import { runCli } from './run.js';

process.exitCode = await runCli(buildProgram(), process.argv);
