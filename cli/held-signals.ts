import { constants } from 'node:os';

export interface HeldSignals {
  /** Stops holding and emits the held signals again, in arrival order, to the listeners in place now. Idempotent. */
  release(): void;
}

const SERVICE_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];

/**
 * Holds SIGTERM, SIGINT and SIGHUP while a service command loads its modules
 * and config, until the service loop listens for them (cli/service-loop.ts).
 * Without a listener Node applies the default action, so a `systemctl
 * reload` or a logrotate `kill -HUP` in the first moments of a start killed
 * the agent or gateway outright. Held, a stop is acted on once the service
 * has started (drained and closed as usual) and a reload reloads it. A
 * second SIGTERM or SIGINT while held exits at once, as it does later.
 */
export function holdSignals(proc: NodeJS.Process = process): HeldSignals {
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

/** Runs a service command with the service signals held from its first moment (holdSignals), released when it ends. */
export async function withHeldSignals(run: (held: HeldSignals) => Promise<void>): Promise<void> {
  const held = holdSignals();
  try {
    await run(held);
  } finally {
    held.release();
  }
}
