import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { isMeteorError, type AuditEvent } from '../../protocols/index.js';
import type { AgentBuffer, ExtraOp } from '../buffer/types.js';
import { appendFitting } from './append-fitting.js';
import { refusedRecord } from './intake-error.js';
import type { IntakeMeter } from './intake-meter.js';

export interface DurableAppendOptions {
  buffer: AgentBuffer;
  /** The intake's name, in the error record of an event too large once stored. */
  intake: string;
  meter: IntakeMeter;
  /** Aborted when the intake closes: the wait ends and the append is given up (nothing was acknowledged). */
  signal: AbortSignal;
  logger?: Logger;
  /** Pause before retrying after a failed write (disk full, I/O error), ms. */
  retryMs?: number;
}

/** Raised when the intake closed before the events became durable. */
export class AppendAbortedError extends Error {
  constructor(message = 'intake closed before the events were durable') {
    super(message);
    this.name = 'AppendAbortedError';
  }
}

/**
 * Appends one batch for a source that cannot be told "503, retry later"
 * (a file, a TCP stream): when the buffer is full it waits for space and
 * tries again, so the caller simply stops reading meanwhile — backpressure
 * (DESIGN §3.5). A failed write is retried after a pause; the source's
 * checkpoint has not moved, so nothing is lost or repeated. An event too
 * large once stored, or with no canonical JSON, is refused for good: an
 * intake error record takes its place (counted invalid, logged). Resolves only once the events (and `extra`, e.g. a file
 * offset) are durable, with how many events were appended (error records
 * included); rejects
 * with AppendAbortedError only when the intake closes first (`signal`): a
 * buffer that is not open may be reopening its database (the intake closes
 * before the buffer at shutdown).
 */
export async function durableAppend(
  events: readonly AuditEvent[],
  extra: readonly ExtraOp[] | undefined,
  options: DurableAppendOptions,
): Promise<number> {
  const { buffer, meter, signal } = options;
  let blocked = false;
  try {
    for (;;) {
      if (signal.aborted) throw new AppendAbortedError();
      try {
        // Refused for good, like any invalid record (retrying cannot make them fit or serialisable): an intake error record each, in their place.
        const tooLarge = await appendFitting(
          events,
          (batch) => meter.timeAppend(batch.length, () => buffer.append(batch, extra)),
          (event, error) => refusedRecord(options.intake, event, error),
        );
        if (tooLarge.length > 0) {
          meter.invalid(tooLarge.length);
          options.logger?.warn({ refused: tooLarge }, 'events the buffer cannot store (too large once stored, or no canonical JSON): buffered as intake errors');
        }
        return events.length;
      } catch (err) {
        const code = isMeteorError(err) ? err.code : undefined;
        if (code === 'METEORZX_BUFFER_FULL' || code === 'METEORZX_BUFFER_REJECTED') {
          // Once per wait, as blocked(false) is: a meter that counts its waiters (the edge broker's) stayed at 1.
          if (!blocked) {
            options.logger?.info({ code }, 'buffer full: reading paused until there is space');
            meter.blocked(true);
          }
          blocked = true;
          await waitOrAbort(buffer.waitForSpace(), signal);
          continue;
        }
        // Not open is not closed for good: after a refused write the buffer reopens its database,
        // and until then says BUFFER_CLOSED. Only the intake's own signal ends the wait.
        if (code === 'METEORZX_BUFFER_CLOSED') options.logger?.warn({ code }, 'buffer not open; retrying (the checkpoint has not moved)');
        else {
          meter.error('append');
          options.logger?.error({ err }, 'append failed; retrying (the checkpoint has not moved)');
        }
        await delay(options.retryMs ?? 1000, undefined, { signal }).catch(() => undefined);
      }
    }
  } finally {
    if (blocked) {
      meter.blocked(false);
      options.logger?.info('buffer has space again: reading resumed');
    }
  }
}

function waitOrAbort(wait: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    wait.then(done, done);
  });
}
