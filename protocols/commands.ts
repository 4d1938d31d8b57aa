import { ProtocolErrors } from './errors.js';

/** Commands sent to an agent on `audit/<id>/cmd` (DESIGN §5). */
export interface PullCommand {
  op: 'pull';
  /** Re-push events with seq > after. */
  after: number;
  /** …and seq ≤ until, when given. */
  until?: number;
  /** Only this epoch, when given (an agent ignores a pull for an epoch it no longer has). */
  epoch?: string;
}

export type AgentCommand = PullCommand;

/** A seq (or a cursor before one) as JSON carries it: an integer ≥ 0. */
export function isSeq(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Parses a command payload; throws METEORZX_INVALID_COMMAND naming what is wrong. */
export function parseCommand(payload: Uint8Array | string): AgentCommand {
  const fail = (why: string) => ProtocolErrors.METEORZX_INVALID_COMMAND(`invalid command: ${why}`);
  let value: unknown;
  try {
    value = JSON.parse(typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'));
  } catch {
    throw fail('not JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw fail('not an object');
  const cmd = value as Record<string, unknown>;
  if (cmd.op !== 'pull') throw fail(`unknown op ${JSON.stringify(cmd.op ?? null).slice(0, 40)}`);
  if (!isSeq(cmd.after)) throw fail('after must be an integer ≥ 0');
  if (cmd.until !== undefined && (!isSeq(cmd.until) || cmd.until <= cmd.after)) throw fail('until must be an integer > after');
  if (cmd.epoch !== undefined && typeof cmd.epoch !== 'string') throw fail('epoch must be a string');
  return {
    op: 'pull',
    after: cmd.after,
    ...(cmd.until === undefined ? {} : { until: cmd.until as number }),
    ...(cmd.epoch === undefined ? {} : { epoch: cmd.epoch as string }),
  };
}
