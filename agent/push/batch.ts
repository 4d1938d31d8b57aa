import { GAP_TYPE, type AuditEvent, type ChainedEvent } from '../../protocols/index.js';
import type { StoredLine } from '../buffer/types.js';

export type BatchStatus = 'pending' | 'inflight' | 'acked' | 'failed' | 'permanent';

/** A run of consecutive buffered events the sender pushes as one unit. */
export interface Batch {
  /** Stored lines, sent as they are. */
  events: readonly StoredLine[];
  first: number;
  last: number;
  status: BatchStatus;
  error?: string;
  /** Failure round current when this send started (see Sender.onOutcome). */
  round: number;
  /**
   * The sender's number of the send that first carried these events (kept by retries and split
   * halves): a refusal is the event's own only once the gateway has acked a send started after it.
   */
  firstSend?: number;
  /**
   * A single event refused while the refusal may be of every body (Sender.resolvePermanent): it is
   * resent after the window's other batches, whose acks can show that the gateway takes events.
   */
  held?: boolean;
  /** Sends in a row that went out and got no answer (see SendOutcome's unanswered). */
  unanswered?: number;
  /** The last refusal was for the batch's size (SendOutcome's tooLarge). */
  tooLarge?: boolean;
}

/** Unanswered sends in a row after which a batch is halved: one is a gateway going away, a second in a row looks like this batch. */
export const UNANSWERED_BEFORE_HALVING = 2;

/** Halves a permanently refused batch: a 413 or a 400 on one bad event must not sink its neighbours. */
export function splitBatch(batch: Batch, round: number): [Batch, Batch] {
  const half = Math.ceil(batch.events.length / 2);
  const part = (events: readonly StoredLine[]): Batch => ({
    events,
    first: (events[0] as StoredLine).seq,
    last: (events.at(-1) as StoredLine).seq,
    status: 'pending',
    round,
    ...(batch.firstSend === undefined ? {} : { firstSend: batch.firstSend }),
  });
  return [part(batch.events.slice(0, half)), part(batch.events.slice(half))];
}

/**
 * The gap event for an event the gateway refuses for good: same shape as the
 * buffer's own gap events (from, to, count, reason), plus what and why.
 */
export function refusedGap(item: StoredLine, error: string): AuditEvent {
  const event = JSON.parse(item.line) as ChainedEvent;
  return {
    type: GAP_TYPE,
    data: { from: event.seq, to: event.seq, count: 1, reason: 'gateway-refused', epoch: event.epoch, id: event.id, error },
  };
}
