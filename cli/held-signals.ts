import { constants } from 'node:os';

export interface HeldSignals {
  /** Stops holding and emits the held signals again, in arrival order, to the listeners in place now. Idempotent. */
  release(): void;
}

const SERVICE_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];

/** What holdSignals needs of the process; `process` by default, a fake in tests. */
export type SignalProcess = Pick<NodeJS.Process, 'on' | 'off' | 'emit' | 'exit'>;

/**
 * Holds SIGTERM, SIGINT and SIGHUP while a service command loads its modules
 * and config, until the service loop listens for them (cli/service-loop.ts).
 * Without a listener Node applies the default action, so a `systemctl
 * reload` or a logrotate `kill -HUP` in the first moments of a start killed
 * the agent or gateway outright. Held, a stop is acted on once the service
 * has started (drained and closed as usual) and a reload reloads it. A
 * second SIGTERM or SIGINT while held exits at once, as it does later.
 * A signal held by a command that fails before its service loop listens is
 * dropped: the command exits with its own status (1, 2) and says why.
 */
export function holdSignals(proc: SignalProcess = process): HeldSignals {
  const held: NodeJS.Signals[] = [];
  let released = false;
  const record = (signal: NodeJS.Signals) => {
    if (signal !== 'SIGHUP' && held.some((s) => s !== 'SIGHUP')) proc.exit(128 + (constants.signals[signal] ?? 1));
    held.push(signal);
  };
  for (const signal of SERVICE_SIGNALS) proc.on(signal, record);
  return {
    release() {
      if (released) return;
      released = true;
      for (const signal of SERVICE_SIGNALS) proc.off(signal, record);
      for (const signal of held.splice(0)) proc.emit(signal, signal);
    },
  };
}

/**
 * Warnings raised while a service loads its config (an expired certificate), before the logger exists:
 * its level is in that config. `warn` holds them until `logTo` names the logger, then writes through.
 */
export class HeldWarnings {
  private held: string[] = [];
  private logger: { warn(obj: object, msg: string): void } | undefined;

  readonly warn = (message: string): void => {
    if (this.logger === undefined) this.held.push(message);
    else this.logger.warn({}, message);
  };

  logTo(logger: { warn(obj: object, msg: string): void }): void {
    this.logger = logger;
    for (const message of this.held) logger.warn({}, message);
    this.held = [];
  }
}

/** The commands that run as a service (cli/service-loop.ts): the ones whose signals are held at start-up. */
const SERVICE_COMMANDS: ReadonlySet<string> = new Set(['agent', 'gateway']);

/** The holder holdStartupSignals installed, until a service command takes it (withHeldSignals). */
let startup: HeldSignals | undefined;

/**
 * Holds the service signals from the program's first statement (bin/meteorzx.js, and cli/hold-startup.ts
 * first in the bundles' entries) when the command is `agent` or `gateway`: loading the program's modules
 * before the command's action runs took 120–200 ms on a busy 2-core box, and a SIGHUP or SIGTERM then
 * killed the service by the signal. Only Node's own start-up before any JavaScript runs (about 0.1 s
 * there) is left: Node resets every signal to its default action then, even one the parent ignored.
 * Other commands (send, pull, query…) keep Node's default: Ctrl-C stops them at once.
 */
export function holdStartupSignals(argv: readonly string[] = process.argv, proc: SignalProcess = process): void {
  if (startup === undefined && SERVICE_COMMANDS.has(argv[2] ?? '')) startup = holdSignals(proc);
}

/** Ends the start-up hold, if a service command has not taken it (a command line it refused): see release(). */
export function releaseStartupSignals(): void {
  const held = startup;
  startup = undefined;
  held?.release();
}

/**
 * Runs a service command with the service signals held from its first moment (the start-up hold, or one
 * begun now), released when it ends.
 */
export async function withHeldSignals(run: (held: HeldSignals) => Promise<void>): Promise<void> {
  const held = startup ?? holdSignals();
  startup = undefined;
  try {
    await run(held);
  } finally {
    held.release();
  }
}
