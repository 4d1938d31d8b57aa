import { inspect } from 'node:util';
import { CommanderError, type Command } from 'commander';
import { isMeteorError } from '../protocols/errors.js';
import { formatIssue, isConfigInvalidError } from '../common/config/issues.js';
import { releaseStartupSignals } from './held-signals.js';

export interface CliIo {
  /** Where error lines go. */
  writeErr(text: string): void;
  /** METEORZX_DEBUG=1 prints stack traces of unexpected errors. */
  env: Readonly<Record<string, string | undefined>>;
}

const processIo: CliIo = { writeErr: (text) => process.stderr.write(text), env: process.env };

/** Exit statuses: 0 success, 1 failure (bad config, unreachable peer, ...), 2 wrong command line. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/**
 * Runs the program and turns every outcome into an exit status. This is the
 * one place errors are printed: a user mistake is one line (`meteorzx: ...`),
 * a config lists each problem on its own line, and only an unexpected error
 * under METEORZX_DEBUG=1 shows a stack trace.
 */
export async function runCli(program: Command, argv: readonly string[], io: CliIo = processIo): Promise<number> {
  // Commander copies these settings only into commands created after them, so apply them to the whole tree.
  forEachCommand(program, (command) => {
    command.exitOverride();
    command.configureOutput({
      writeErr: io.writeErr,
      outputError: (text, write) => write(`meteorzx: ${text.replace(/^error: /, '')}`),
    });
  });
  try {
    await program.parseAsync([...argv]);
    return EXIT.ok;
  } catch (err) {
    return report(err, io);
  } finally {
    // A service command refused before its action (a usage error) never took the start-up hold.
    releaseStartupSignals();
  }
}

function report(err: unknown, io: CliIo): number {
  // Commander has already printed help, the version, or its one-line usage error.
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  const debug = io.env.METEORZX_DEBUG === '1';
  if (isConfigInvalidError(err)) {
    io.writeErr(`meteorzx: ${err.summary}\n${err.issues.map((issue) => `${formatIssue(issue)}\n`).join('')}`);
    return EXIT.failure;
  }
  if (isMeteorError(err)) {
    if (debug) io.writeErr(`${inspect(err)}\n`);
    else io.writeErr(`meteorzx: ${err.message}${err.userError ? '' : ` (${err.code})`}\n`);
    return err.code === 'METEORZX_USAGE' ? EXIT.usage : EXIT.failure;
  }
  if (debug) io.writeErr(`${inspect(err)}\n`);
  else io.writeErr(`meteorzx: ${err instanceof Error ? err.message : String(err)} (set METEORZX_DEBUG=1 for the stack trace)\n`);
  return EXIT.failure;
}

function forEachCommand(command: Command, visit: (command: Command) => void): void {
  visit(command);
  for (const sub of command.commands) forEachCommand(sub, visit);
}
