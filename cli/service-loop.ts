import { constants } from 'node:os';
import type { SystemdState } from '../common/systemd-notify.js';
import type { HeldSignals } from './held-signals.js';

/** What the loop needs from a service (the Agent, the Gateway). */
export interface Closable {
  close(): Promise<void>;
}

/** The part of pino's logger the loop uses. */
export interface LoopLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Where signals come from and how to leave at once; `process` by default, fakes in tests. */
export interface SignalSource {
  on(event: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
  off(event: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
  exit(code: number): void;
}

export interface ServiceLoopOptions<C, S extends Closable> {
  /** The config the service starts with (already loaded: the logger was built from it). */
  config: C;
  /** Reads and validates the config file again (SIGHUP); throws when it is invalid. */
  load(): Promise<C>;
  /** Builds a service, not started. */
  create(config: C): S;
  /** Starts a service and announces it (ready line, addresses); on every (re)start. */
  start(service: S): Promise<void>;
  /**
   * Applies a new config to the running service without a restart when it can; false: restart it. Throws
   * when the new config cannot be applied (a port taken): the service is then back on its current config.
   */
  reloadInPlace?(service: S, next: C): Promise<boolean>;
  /**
   * For an error reloadInPlace threw: true when the service could not be put back on its current config
   * either (part of it is down). The loop then fails — the CLI exits 1 for its supervisor — as when a
   * restart cannot start the current config again; running on with an intake down would go unseen.
   */
  unrecoverable?(err: unknown): boolean;
  /** A reload whose new config could not start (counted in the service's metrics). */
  onReloadFailed?(err: unknown): void;
  logger: LoopLogger;
  /** sd_notify (Type=notify units); default: common/systemd-notify. */
  notify?(state: SystemdState): Promise<unknown>;
  signals?: SignalSource;
  /** Signals that came while the command loaded (cli/held-signals.ts): released once the loop listens. */
  held?: HeldSignals;
}

/**
 * Runs a service until SIGTERM or SIGINT, then drains and closes it; a
 * second signal exits at once (128 + its number), since what was
 * acknowledged is durable anyway. SIGHUP (`systemctl reload`) reads the
 * config again: an invalid one is logged and the service runs on unchanged;
 * a valid one is applied in place when the service can, otherwise the
 * service is drained and started anew with it (same data dir). A new config
 * that cannot start (a port taken) is logged and counted, and the service
 * runs on with the config it had, started again with it when it was already
 * drained — as nginx keeps its workers when a reload's new config cannot
 * bind. Reloads and the stop are serialised, so a stop during a reload
 * closes whichever service the reload left running. A start that fails with
 * the config that ran before (the first start, or the return to it) rejects,
 * after closing what is left: the CLI exits 1 and systemd restarts the unit;
 * so does an in-place reload that cannot put the current config back (`unrecoverable`).
 * systemd hears READY=1 once started, RELOADING=1 … READY=1 around a reload.
 */
export async function runService<C, S extends Closable>(options: ServiceLoopOptions<C, S>): Promise<NodeJS.Signals> {
  const { logger } = options;
  const signals = options.signals ?? process;
  const notify = options.notify ?? (await defaultNotify(logger));
  let current = options.config;
  let service = options.create(current);
  let stopping = false;
  // Every lifecycle step runs after the previous one: start, each reload, the stop.
  let queue: Promise<void> = options.start(service).then(() => notify('READY=1').then(() => undefined));

  const reload = async () => {
    await notify('RELOADING=1');
    let next: C;
    try {
      next = await options.load();
    } catch (err) {
      logger.error({ err }, 'reload: config rejected, running on with the current one');
      await notify('READY=1');
      return;
    }
    const failed = (err: unknown, what: string) => {
      options.onReloadFailed?.(err);
      logger.error({ err }, `reload: the new config could not start (${err instanceof Error ? err.message : String(err)}); ${what}`);
    };
    let inPlace: boolean;
    try {
      inPlace = options.reloadInPlace !== undefined && (await options.reloadInPlace(service, next));
    } catch (err) {
      if (options.unrecoverable?.(err) === true) {
        failed(err, 'nor could the current one start again: exiting, for the supervisor to restart the service');
        throw err;
      }
      failed(err, 'running on with the current one');
      await notify('READY=1');
      return;
    }
    if (inPlace) {
      logger.info({}, 'reload: applied in place');
    } else {
      logger.info({}, 'reload: restarting with the new config');
      await service.close();
      service = options.create(next);
      try {
        await options.start(service);
      } catch (err) {
        // start() closed what it had opened. The current config started before: start it again.
        failed(err, 'starting again with the current one');
        service = options.create(current);
        await options.start(service);
        await notify('READY=1');
        return;
      }
    }
    current = next;
    await notify('READY=1');
  };

  let onHup: (() => void) | undefined;
  let onStop: ((signal: NodeJS.Signals) => void) | undefined;
  let onSecond: ((signal: NodeJS.Signals) => void) | undefined;
  try {
    const signal = await new Promise<NodeJS.Signals>((resolve, reject) => {
      const fail = (err: unknown) => {
        stopping = true;
        reject(err);
      };
      onHup = () => {
        if (stopping) return;
        queue = queue.then(reload).catch(fail);
      };
      onStop = (signal) => {
        if (stopping) return;
        stopping = true;
        onSecond = (again) => {
          logger.warn({ signal: again }, 'second signal, exiting without draining');
          signals.exit(128 + (constants.signals[again] ?? 1));
        };
        signals.on('SIGTERM', onSecond);
        signals.on('SIGINT', onSecond);
        logger.info({ signal }, 'stopping');
        queue.then(() => resolve(signal), reject);
      };
      signals.on('SIGHUP', onHup);
      signals.on('SIGTERM', onStop);
      signals.on('SIGINT', onStop);
      queue = queue.catch(fail);
      options.held?.release();
    });
    await service.close();
    logger.info({ signal }, 'stopped');
    return signal;
  } catch (err) {
    await service.close().catch((closeErr: unknown) => logger.error({ err: closeErr }, 'closing after a failure failed'));
    throw err;
  } finally {
    for (const [event, listener] of [
      ['SIGHUP', onHup],
      ['SIGTERM', onStop],
      ['SIGINT', onStop],
      ['SIGTERM', onSecond],
      ['SIGINT', onSecond],
    ] as const) {
      if (listener !== undefined) signals.off(event, listener);
    }
  }
}

async function defaultNotify(logger: LoopLogger): Promise<(state: SystemdState) => Promise<boolean>> {
  const { notifySystemd } = await import('../common/systemd-notify.js');
  return (state) => notifySystemd(state, { warn: (message) => logger.warn({}, message) });
}
