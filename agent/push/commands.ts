import type { Logger } from 'pino';
import { parseCommand, type PullCommand } from '../../protocols/index.js';
import type { AgentBuffer } from '../buffer/types.js';
import type { PushTransport } from './types.js';

export interface CommandRunnerOptions {
  buffer: AgentBuffer;
  transport: PushTransport;
  /** Events per re-pushed batch. */
  batchEvents: number;
  /** About how many bytes per batch. */
  batchBytes: number;
  /** Attempts per batch before the command is given up (the gateway asks again if the hole stays). */
  tries?: number;
  retryDelayMs?: number;
  logger?: Logger;
}

/** Commands waiting to run, at most: the gateway repeats a pull while its hole stays, so one ignored is asked again. */
export const MAX_PENDING_COMMANDS = 16;

/**
 * Answers `{"op":"pull","after":A,"until":B}` on audit/<id>/cmd (DESIGN §5)
 * by re-pushing that range as ordinary events through the push transport.
 * It reads the buffer directly and never touches the delivered cursor: the
 * range is usually below it already, and the sender's own progress must not
 * move backwards or forwards because of a repair. Commands run one at a
 * time, so a gateway repeating a request cannot fan out into parallel floods;
 * a command the same as one waiting is dropped, and at most
 * MAX_PENDING_COMMANDS wait.
 */
export class CommandRunner {
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  /** Commands received and not yet started, by their text: a repeat of one of them is the same work. */
  private readonly pending = new Set<string>();

  constructor(private readonly options: CommandRunnerOptions) {}

  /** Wires the transport's command channel; a transport without one is left alone. */
  attach(): void {
    this.options.transport.onCommand?.((payload) => this.receive(payload));
  }

  receive(payload: Buffer | string): void {
    let command: PullCommand;
    try {
      command = parseCommand(payload);
    } catch (err) {
      this.options.logger?.warn({ err: (err as Error).message }, 'ignored an invalid command');
      return;
    }
    const key = JSON.stringify([command.epoch, command.after, command.until]);
    if (this.pending.has(key)) return;
    if (this.pending.size >= MAX_PENDING_COMMANDS) {
      // Whoever floods the command topic (anyone may, on a broker such as Mosquitto) must not queue unbounded re-pushes.
      this.options.logger?.warn({ command, pending: this.pending.size }, 'command queue full; command ignored (the gateway asks again while the hole stays)');
      return;
    }
    this.pending.add(key);
    this.chain = this.chain
      .then(() => {
        this.pending.delete(key);
        return this.run(command);
      })
      .catch((err: unknown) => this.options.logger?.warn({ err, command }, 'command failed'));
  }

  /** Resolves when every command received so far has finished. */
  idle(): Promise<void> {
    return this.chain;
  }

  close(): void {
    this.closed = true;
  }

  private async run(command: PullCommand): Promise<void> {
    const { buffer, batchEvents, batchBytes, logger } = this.options;
    const state = buffer.state();
    if (command.epoch !== undefined && command.epoch !== state.epoch) {
      logger?.warn({ command, epoch: state.epoch }, 'pull command for an epoch this buffer no longer is; ignored');
      return;
    }
    const until = Math.min(command.until ?? state.head, state.head);
    let cursor = command.after;
    let sent = 0;
    while (cursor < until && !this.closed) {
      const events = await buffer.readLines(cursor, Math.min(batchEvents, until - cursor), batchBytes);
      if (events.length === 0) break;
      await this.sendWithRetry(events);
      sent += events.length;
      cursor = (events.at(-1) as (typeof events)[number]).seq;
    }
    logger?.info({ after: command.after, until, sent, oldest: state.oldest }, 'pull command answered');
  }

  private async sendWithRetry(events: Parameters<PushTransport['send']>[0]): Promise<void> {
    const tries = this.options.tries ?? 5;
    for (let attempt = 1; ; attempt += 1) {
      const outcome = await this.options.transport.send(events);
      if (outcome.kind !== 'retry') return;
      if (attempt >= tries || this.closed) throw new Error(`re-push failed: ${outcome.error}`);
      await new Promise((r) => setTimeout(r, this.options.retryDelayMs ?? 1000));
    }
  }
}
