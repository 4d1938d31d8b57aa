import type { Logger } from 'pino';
import type { ChainedEvent } from '../../protocols/index.js';
import type { AgentBuffer, StoredLine } from '../buffer/types.js';
import type { AgentMetrics } from '../metrics.js';
import { UNANSWERED_BEFORE_HALVING, refusedGap, splitBatch, type Batch } from './batch.js';
import type { BatchCap } from './batch-cap.js';

/**
 * What the sender does with batches the peer refuses (a 400 or 413 for the
 * bytes themselves) or keeps closing the link under (a packet over a
 * broker's limit): split them, learn a smaller batch size, and skip a single
 * event refused for good with a gap event naming it.
 */
export interface RefusalContext {
  /** The sender's window, changed in place. */
  window: Batch[];
  /** The failure round current now (Sender.failureRound; it moves while a gap event is appended). */
  round: () => number;
  /** True when the gateway has acked a send started after the batch's events were first sent (Sender.takenSince). */
  takenSince: (batch: Batch) => boolean;
  cap: BatchCap;
  buffer: AgentBuffer;
  logger?: Logger;
  metrics?: AgentMetrics;
}

/**
 * Halves a failed batch the peer keeps closing the link under. A broker closes the connection on a
 * packet over its size limit (the gateway's MQTT listener past limits.maxBodyBytes + 64 KiB, a
 * Mosquitto with max_packet_size), and MQTT 3.1.1 can say no more: resent whole, the batch would
 * fail the same way for ever and hold back everything after it. The halves are read again from the
 * buffer before they go (status failed, see BatchReader.reload), and one more loss halves them again.
 */
export function halveUnanswered(ctx: RefusalContext): void {
  for (let i = 0; i < ctx.window.length; i += 1) {
    const batch = ctx.window[i] as Batch;
    if (batch.status !== 'failed' || (batch.unanswered ?? 0) < UNANSWERED_BEFORE_HALVING || batch.events.length < 2) continue;
    ctx.logger?.warn({ seqs: [batch.first, batch.last], error: batch.error }, 'this batch went unanswered again; halving it');
    if (ctx.takenSince(batch)) capBatches(ctx, batch);
    const halves = splitBatch(batch, ctx.round());
    for (const half of halves) {
      half.status = 'failed';
      half.unanswered = UNANSWERED_BEFORE_HALVING - 1;
    }
    ctx.window.splice(i, 1, ...halves);
    i += 1;
  }
}

/** New batches hold at most half of this one, refused for its size (BatchCap). */
function capBatches(ctx: RefusalContext, batch: Batch): void {
  if (ctx.cap.refused(batch.events.length)) {
    ctx.logger?.warn({ events: batch.events.length, maxEvents: ctx.cap.limit }, 'the peer refuses batches this large; new batches are smaller for a while');
  }
}

/** Splits permanently refused batches; skips (with a gap event) a single refused event. */
export async function resolvePermanent(ctx: RefusalContext): Promise<void> {
  for (let i = 0; i < ctx.window.length; i += 1) {
    const batch = ctx.window[i] as Batch;
    if (batch.status !== 'permanent') continue;
    if (batch.events.length > 1) {
      ctx.logger?.warn({ seqs: [batch.first, batch.last], error: batch.error }, 'gateway refused a batch; splitting it');
      if (batch.tooLarge === true && ctx.takenSince(batch)) capBatches(ctx, batch);
      ctx.window.splice(i, 1, ...splitBatch(batch, ctx.round()));
      i += 1;
      continue;
    }
    const item = batch.events[0] as StoredLine;
    if (!ctx.takenSince(batch)) {
      // The gateway has taken no send started after this event's first, so the refusal need not be about
      // this event: a wrong URL or a proxy refuses every body, perhaps only since a moment ago, when the
      // sends in flight with this one were acked. Skipping would lose every event, each followed by a gap
      // event that is refused and skipped in turn, for ever. Resend it after the backoff instead (counted
      // in onOutcome); it is skipped once the gateway is seen to take a later send.
      batch.status = 'failed';
      batch.held = true;
      continue;
    }
    // Even into a full buffer: the refused event holds the delivered cursor back, so under `block` or
    // `reject` the buffer is full until it is skipped, and a gap event refused for that left the loss silent.
    // A gap that cannot be written now (a failed write) fails this step: the event is skipped once it is.
    await ctx.buffer.append([refusedGap(item, batch.error ?? 'unknown')], undefined, { evenIfFull: true });
    ctx.metrics?.eventsSkipped.inc();
    ctx.logger?.error({ seq: item.seq, id: idOf(item), error: batch.error }, 'gateway permanently refused an event; skipping it');
    batch.status = 'acked';
  }
}

/** A stored event's id, for a log line (parsed only on these rare paths). */
export function idOf(item: StoredLine): string | undefined {
  return (JSON.parse(item.line) as ChainedEvent).id;
}
