import type { Logger } from 'pino';
import type { ChainedEvent, PushState } from '../../protocols/index.js';
import type { AgentBuffer, StoredLine } from '../buffer/types.js';
import type { AgentMetrics } from '../metrics.js';
import { Backoff } from './backoff.js';
import { UNANSWERED_BEFORE_HALVING, refusedGap, splitBatch, type Batch } from './batch.js';
import { BatchCap } from './batch-cap.js';
import { CircuitBreaker } from './circuit-breaker.js';
import type { PushTransport, SendOutcome } from './types.js';
import { Wakeup } from './wakeup.js';

export interface SenderOptions {
  /** Most events per batch. */
  maxEvents: number;
  /** How long a partial batch may wait for more events before it goes, ms. */
  maxWaitMs: number;
  /** About how many bytes one batch may hold (passed to buffer.read). */
  maxBytes?: number;
  /** Retry delays (full jitter), ms. */
  backoff: { initialMs: number; maxMs: number };
  /** Consecutive failed rounds that open the circuit, and how long it stays open (ms). */
  breaker: { threshold: number; cooldownMs: number };
  /** Largest Retry-After honoured, ms (a gateway asking for an hour is not obeyed blindly). */
  maxRetryAfterMs?: number;
  /** Longest close() waits for in-flight sends, ms. */
  closeTimeoutMs?: number;
  random?: () => number;
  /**
   * Clock of the backoff, the circuit breaker and the linger, ms. Default: the monotonic clock
   * (performance.now). Only intervals are measured: on the wall clock, a step back (NTP correcting a fast
   * clock) during a backoff or an open circuit stopped every send for the length of the step.
   */
  now?: () => number;
  logger?: Logger;
  metrics?: AgentMetrics;
}

export interface SenderStatus {
  state: PushState;
  lastError: string | null;
}

/**
 * The push core shared by every transport. It reads batches from the buffer
 * after the delivered cursor, keeps at most `transport.maxInFlight` batches
 * in memory, and advances the delivered cursor only over a contiguous prefix
 * of acknowledged batches — a later batch acked before an earlier one waits,
 * so a crash at any moment resends from the first unacknowledged event
 * (duplicates are dropped by the gateway's dedup on `id`).
 *
 * Failures: a failed batch is resent after an exponential backoff with full
 * jitter (or the gateway's Retry-After, when longer); `breaker.threshold`
 * consecutive failed rounds open a circuit breaker, after which one probe per
 * cool-down is sent. A "round" is all sends started before the latest
 * counted failure: when the gateway dies with four batches in flight, that is
 * one failure, not four.
 *
 * A permanent refusal (a 400 or 413 for the bytes themselves) is not retried
 * as is, since it would loop forever: the batch is split in halves, and a
 * single event still refused is skipped, logged, counted and recorded in the
 * buffer as a `meteorzx.gap` event naming its seq, so the loss is not silent.
 * It is skipped only when the gateway has acked a send started after the
 * event was first sent; until then the refusal may be of every body (a wrong
 * URL, a proxy that began refusing while sends were in flight), and it is
 * retried and paced like a failure.
 */
export class Sender {
  private readonly window: Batch[] = [];
  private inflight = 0;
  private delivered = 0;
  /** The buffer epoch the window's seqs belong to (see followEpoch). */
  private epoch = '';
  private backoffUntil = 0;
  private failureRound = 0;
  /** Sends started so far; each send's number orders it (see Batch.firstSend). */
  private sends = 0;
  /**
   * The number of the latest-started send the gateway acknowledged: evidence that it takes events now
   * (see takenSince). A send started before a refused one proves nothing by its ack, however late that
   * ack comes: a proxy may have begun refusing everything between the two.
   */
  private latestAckedSend = 0;
  /** The transport's link came up during a backoff or an open circuit: one batch goes at once (see linkUp). */
  private probe = false;
  /** The number of the send that is that probe, once launched. */
  private probeSend: number | undefined;
  private lingerSince: number | undefined;
  private stuckAt: number | undefined;
  /** The buffer knows the window is held in memory (holdInMemory), and names none of it lost. */
  private holds = false;
  private current: PushState = 'idle';
  private lastError: string | null = null;
  private closing = false;
  private loop: Promise<void> | undefined;
  private closed: Promise<void> | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly wake = new Wakeup();
  private readonly backoff: Backoff;
  private readonly breaker: CircuitBreaker;
  private readonly cap: BatchCap;
  private readonly now: () => number;

  constructor(
    private readonly buffer: AgentBuffer,
    private readonly transport: PushTransport,
    private readonly options: SenderOptions,
  ) {
    this.now = options.now ?? monotonicNow;
    this.backoff = new Backoff({ ...options.backoff, ...(options.random ? { random: options.random } : {}) });
    this.breaker = new CircuitBreaker({ ...options.breaker, now: this.now });
    this.cap = new BatchCap(options.maxEvents, this.now);
  }

  async start(): Promise<void> {
    if (this.loop !== undefined) return;
    const { delivered, epoch } = this.buffer.state();
    this.delivered = delivered;
    this.epoch = epoch;
    this.transport.progress?.(delivered);
    await this.transport.start();
    this.unsubscribe = this.buffer.onAppend(() => this.wake.notify());
    // The window is one run of seqs after the cursor, every one of them in memory (see reload).
    if (this.buffer.holdInMemory !== undefined) {
      this.buffer.holdInMemory(() => ({ epoch: this.epoch, upTo: this.window.at(-1)?.last ?? this.delivered }));
      this.holds = true;
    }
    this.transport.onLinkUp?.(() => this.linkUp());
    this.loop = this.run();
  }

  /**
   * The transport's link came up by itself (MQTT's command link, reconnecting on its own backoff): the
   * gateway is back, and a backoff or an open circuit would still hold the sends back for up to
   * push.backoff.maxMs or push.breaker.cooldownMs. Probe now instead, as a half-open circuit would:
   * one batch. Its failure counts like any other (a longer backoff, the circuit reopened), and a link
   * that comes up and drops again is itself retried on its backoff, so probes never come faster than that.
   */
  private linkUp(): void {
    if (this.closing || this.probe) return;
    if (this.now() >= this.backoffUntil && this.breaker.state !== 'open') return;
    this.probe = true;
    this.probeSend = undefined;
    this.options.logger?.info({ breaker: this.breaker.state }, 'push link is up again; probing the gateway now, not after the backoff');
    this.wake.notify();
  }

  status(): SenderStatus {
    return { state: this.current, lastError: this.lastError };
  }

  /** Stops reading, lets in-flight sends finish (bounded), records their acks, closes the transport. Idempotent. */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    this.unsubscribe?.();
    this.wake.notify();
    await this.loop;
    const deadline = this.now() + (this.options.closeTimeoutMs ?? 5000);
    while (this.inflight > 0 && this.now() < deadline) await this.wake.wait(deadline - this.now());
    try {
      await this.ackPrefix();
    } catch (err) {
      this.options.logger?.warn({ err }, 'could not record the last acks on close; they will be resent');
    }
    await this.transport.close();
  }

  private async run(): Promise<void> {
    while (!this.closing) {
      try {
        await this.step();
      } catch (err) {
        // A buffer read or ack failing is not a gateway failure: log it and try again shortly.
        this.lastError = `buffer: ${(err as Error).message}`;
        this.setState('backoff');
        this.options.logger?.error({ err }, 'push sender step failed');
        if (!this.closing) await this.wake.wait(1000);
      }
    }
  }

  private async step(): Promise<void> {
    this.followEpoch();
    this.halveUnanswered();
    await this.resolvePermanent();
    await this.ackPrefix();
    if (this.closing) return;
    const now = this.now();
    const probing = this.probe;
    if (!probing && now < this.backoffUntil) {
      this.setState(this.breaker.state === 'open' ? 'open' : 'backoff');
      await this.wake.wait(this.backoffUntil - now);
      return;
    }
    const breaker = this.breaker.state;
    if (!probing && breaker === 'open') {
      this.setState('open');
      await this.wake.wait(Math.max(1, this.breaker.remainingMs()));
      return;
    }
    // Half-open, or probing a link that came up: exactly one probe in flight until it succeeds.
    const oneProbe = breaker === 'half-open' || probing;
    const limit = oneProbe ? 1 : this.transport.maxInFlight;
    let lingerMs: number | undefined;
    // A batch goes out at most once per step: a send that fails at once (a closed
    // transport) must wait for the next step's backoff check, not spin here.
    const launched = new Set<Batch>();
    while (this.inflight < limit && !this.closing) {
      if (this.failedSince(launched)) break;
      const due = (b: Batch): boolean => (b.status === 'failed' || b.status === 'pending') && !launched.has(b);
      // A held event goes after the others, and after a new batch when held events alone fill the window
      // (maxInFlight 1 and a refused event that went alone): only a send started after it can show that the
      // gateway takes events (then it is skipped), and with the held event first every time none ever would.
      const retry = this.window.find((b) => due(b) && b.held !== true);
      if (retry !== undefined) {
        await this.relaunch(retry, launched);
        continue;
      }
      if (this.window.length < this.transport.maxInFlight || this.heldOnly()) {
        const next = await this.readNext();
        if (typeof next === 'number') {
          lingerMs = next;
          break;
        }
        if (next !== undefined) {
          this.window.push(next);
          launched.add(next);
          this.launch(next);
          continue;
        }
      }
      const held = this.window.find(due);
      if (held === undefined) break;
      await this.relaunch(held, launched);
    }
    // A retry whose events are all gone meanwhile (a hole recorded over them) is settled without a
    // send, so no outcome will wake this loop, and a full window stops it reading on. When that leaves
    // an acked prefix, go round at once: ackPrefix moves past it and the next batch is read. Waiting
    // here would sleep until the next append, i.e. forever once the producers have stopped.
    if (this.window[0]?.status === 'acked') return;
    if (this.inflight > 0) this.setState(oneProbe ? 'half-open' : 'sending');
    else this.setState('idle');
    await this.wake.wait(lingerMs);
  }

  /** Sends a batch of the window again (what the buffer holds of it now, see reload); one with nothing left is settled. */
  private async relaunch(batch: Batch, launched: Set<Batch>): Promise<void> {
    launched.add(batch);
    if (batch.status === 'failed') await this.reload(batch);
    if (batch.events.length === 0) batch.status = 'acked';
    else this.launch(batch);
  }

  /**
   * True when the window holds only held events, so that one more batch may be read past the bound to go
   * before them: up to maxInFlight of them, and past that while they hold less than one batch's bytes
   * (maxBytes; maxEvents events without it), so that refused events in a row, each sent alone, are not
   * stuck either.
   */
  private heldOnly(): boolean {
    if (!this.window.every((b) => b.held === true)) return false;
    if (this.window.length <= this.transport.maxInFlight) return true;
    let bytes = 0;
    for (const b of this.window) for (const e of b.events) bytes += Buffer.byteLength(e.line) + 1;
    return this.options.maxBytes === undefined ? this.window.length < this.options.maxEvents : bytes < this.options.maxBytes;
  }

  /** True when a send started in this step has already failed (then the backoff decides what happens next). */
  private failedSince(launched: ReadonlySet<Batch>): boolean {
    for (const b of launched) if (b.status === 'failed' || b.status === 'permanent') return true;
    return false;
  }

  /** The next batch after the newest one in the window; a number = wait that long for a fuller batch. */
  private async readNext(): Promise<Batch | number | undefined> {
    const cursor = this.window.at(-1)?.last ?? this.delivered;
    const pending = this.buffer.state().head - cursor;
    if (pending <= 0) {
      this.lingerSince = undefined;
      return undefined;
    }
    const limit = this.cap.limit;
    if (pending < limit && this.options.maxWaitMs > 0) {
      const now = this.now();
      this.lingerSince ??= now;
      const left = this.lingerSince + this.options.maxWaitMs - now;
      if (left > 0) return left;
    }
    this.lingerSince = undefined;
    let events = await this.buffer.readLines(cursor, limit, this.options.maxBytes);
    if (this.holds && (events[0]?.seq ?? Infinity) < this.buffer.state().oldest) events = await this.pastDropped(events, cursor, limit);
    const first = events[0];
    const last = events.at(-1);
    if (first === undefined || last === undefined) {
      // The buffer claims events after the cursor but yields none: an unreadable range. Say so once;
      // nothing here can skip it safely (only the buffer knows what was lost and can record the gap).
      this.lastError = `buffer: no readable event after seq ${cursor} though head is ${this.buffer.state().head}`;
      if (this.stuckAt !== cursor) {
        this.stuckAt = cursor;
        this.options.logger?.error({ after: cursor, head: this.buffer.state().head }, 'push stalled: the buffer returns no events after the cursor');
      }
      return undefined;
    }
    this.stuckAt = undefined;
    return { events, first: first.seq, last: last.seq, status: 'pending', round: this.failureRound };
  }

  /**
   * A read that raced a drop: it began before a release deleted these events and returned after, from a
   * snapshot. They were not in the window when the release asked what it holds, so its gap event names
   * them: sent anyway, the gateway would store events that gap says are lost. What the read returned
   * below the buffer's oldest is left out; when that is all of it, the read is taken again from there.
   */
  private async pastDropped(events: StoredLine[], cursor: number, limit: number): Promise<StoredLine[]> {
    const { oldest } = this.buffer.state();
    const left = events.filter((e) => e.seq >= oldest);
    return left.length > 0 ? left : this.buffer.readLines(Math.max(cursor, oldest - 1), limit, this.options.maxBytes);
  }

  /**
   * A retry sends what the buffer holds now, and the copies in memory of
   * what it deleted since: drop-oldest or retention deleting the window's
   * events names them in no gap event (the window is held: holdInMemory), so
   * they are sent from here until the gateway acks them. What the buffer
   * no longer has and its holes name (damage found meanwhile, recorded with
   * a buffer-corrupt gap) is not sent: that would contradict the gap.
   */
  private async reload(batch: Batch): Promise<void> {
    const events = await this.buffer.readLines(batch.first - 1, batch.last - batch.first + 1);
    // A buffer that cannot be told what the window holds names it in its gap events: send nothing of that.
    const oldest = this.holds ? this.buffer.state().oldest : 0;
    const holes = this.buffer.holeRanges();
    const kept = batch.events.filter((e) => e.seq < oldest && !holes.some(([from, to]) => e.seq >= from && e.seq <= to));
    batch.events = [...kept, ...events.filter((e) => e.seq <= batch.last && e.seq >= oldest)];
    batch.first = batch.events[0]?.seq ?? batch.last;
  }

  private launch(batch: Batch): void {
    batch.status = 'inflight';
    batch.round = this.failureRound;
    this.sends += 1;
    const send = this.sends;
    batch.firstSend ??= send;
    if (this.probe) this.probeSend ??= send;
    this.inflight += 1;
    void this.transport
      .send(batch.events)
      .catch((err: unknown): SendOutcome => ({ kind: 'retry', error: (err as Error).message }))
      .then((outcome) => this.onOutcome(batch, outcome, send));
  }

  /**
   * True when the gateway has acked a send started after these events were first sent: then it takes
   * events, and its refusal of these is about them. Before, the refusal may be of every body.
   */
  private takenSince(batch: Batch): boolean {
    return batch.firstSend !== undefined && this.latestAckedSend > batch.firstSend;
  }

  private onOutcome(batch: Batch, outcome: SendOutcome, send: number): void {
    this.inflight -= 1;
    // The probe's answer ends it: an ack ends the backoff it cut short and closes the circuit (below);
    // a failure is counted as any other (a longer backoff, the circuit reopened).
    if (send === this.probeSend) {
      this.probe = false;
      this.probeSend = undefined;
      if (outcome.kind === 'acked') this.backoffUntil = 0;
    }
    const log = this.options.logger;
    this.options.metrics?.sends.inc({ result: outcome.kind });
    if (outcome.kind === 'acked') {
      batch.status = 'acked';
      this.latestAckedSend = Math.max(this.latestAckedSend, send);
      this.breaker.onSuccess();
      this.backoff.reset();
      this.options.metrics?.eventsOut.inc(batch.events.length);
      if (outcome.rejected.length > 0) {
        this.options.metrics?.eventsRejectedByGateway.inc(outcome.rejected.length);
        for (const r of outcome.rejected.slice(0, 10)) {
          const item = batch.events[r.index];
          log?.warn({ seq: item?.seq, id: item === undefined ? undefined : idOf(item), reason: r.error }, 'gateway recorded an event as rejected');
        }
      }
    } else if (outcome.kind === 'permanent') {
      batch.status = 'permanent';
      batch.error = outcome.error;
      batch.tooLarge = outcome.tooLarge === true;
      this.lastError = outcome.error;
      // A gateway that has acked no send started after these events were first sent may be refusing
      // every body (a wrong URL, a proxy): pace its refusals as failures, or the halving runs unthrottled.
      if (!this.takenSince(batch)) this.countFailure(batch, outcome.error);
    } else {
      batch.status = 'failed';
      batch.error = outcome.error;
      this.lastError = outcome.error;
      batch.unanswered = outcome.unanswered === true ? (batch.unanswered ?? 0) + 1 : 0;
      this.countFailure(batch, outcome.error, outcome.retryAfterMs);
    }
    this.wake.notify();
  }

  /** Backoff and breaker for a failed send; only the first failure of a round counts (the others were in flight at the same moment). */
  private countFailure(batch: Batch, error: string, retryAfterMs?: number): void {
    const retryAfter = Math.min(retryAfterMs ?? 0, this.options.maxRetryAfterMs ?? 300_000);
    if (batch.round !== this.failureRound) {
      // Not counted again; but the wait a gateway asked for (a 503 or 429 that came after another failure of
      // the round, a reset say) is kept, not lost to a backoff of a few ms.
      if (retryAfter > 0) this.backoffUntil = Math.max(this.backoffUntil, this.now() + retryAfter);
      return;
    }
    this.failureRound += 1;
    this.breaker.onFailure();
    const jittered = this.backoff.next();
    // At least 1 ms: a timer, not a microtask, so a transport failing instantly cannot starve the event loop.
    const delay = Math.max(1, jittered, retryAfter);
    this.backoffUntil = Math.max(this.backoffUntil, this.now() + delay);
    this.options.logger?.warn(
      { seqs: [batch.first, batch.last], failures: this.backoff.consecutiveFailures, delayMs: delay, breaker: this.breaker.state, error },
      'push failed; backing off',
    );
  }

  /**
   * Halves a failed batch the peer keeps closing the link under. A broker closes the connection on a
   * packet over its size limit (the gateway's MQTT listener past limits.maxBodyBytes + 64 KiB, a
   * Mosquitto with max_packet_size), and MQTT 3.1.1 can say no more: resent whole, the batch would
   * fail the same way for ever and hold back everything after it. The halves are read again from the
   * buffer before they go (status failed, see reload), and one more loss halves them again.
   */
  private halveUnanswered(): void {
    for (let i = 0; i < this.window.length; i += 1) {
      const batch = this.window[i] as Batch;
      if (batch.status !== 'failed' || (batch.unanswered ?? 0) < UNANSWERED_BEFORE_HALVING || batch.events.length < 2) continue;
      this.options.logger?.warn({ seqs: [batch.first, batch.last], error: batch.error }, 'this batch went unanswered again; halving it');
      if (this.takenSince(batch)) this.capBatches(batch);
      const halves = splitBatch(batch, this.failureRound);
      for (const half of halves) {
        half.status = 'failed';
        half.unanswered = UNANSWERED_BEFORE_HALVING - 1;
      }
      this.window.splice(i, 1, ...halves);
      i += 1;
    }
  }

  /** New batches hold at most half of this one, refused for its size (BatchCap). */
  private capBatches(batch: Batch): void {
    if (this.cap.refused(batch.events.length)) {
      this.options.logger?.warn({ events: batch.events.length, maxEvents: this.cap.limit }, 'the peer refuses batches this large; new batches are smaller for a while');
    }
  }

  /** Splits permanently refused batches; skips (with a gap event) a single refused event. */
  private async resolvePermanent(): Promise<void> {
    for (let i = 0; i < this.window.length; i += 1) {
      const batch = this.window[i] as Batch;
      if (batch.status !== 'permanent') continue;
      if (batch.events.length > 1) {
        this.options.logger?.warn({ seqs: [batch.first, batch.last], error: batch.error }, 'gateway refused a batch; splitting it');
        if (batch.tooLarge === true && this.takenSince(batch)) this.capBatches(batch);
        this.window.splice(i, 1, ...splitBatch(batch, this.failureRound));
        i += 1;
        continue;
      }
      const item = batch.events[0] as StoredLine;
      if (!this.takenSince(batch)) {
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
      await this.buffer.append([refusedGap(item, batch.error ?? 'unknown')], undefined, { evenIfFull: true });
      this.options.metrics?.eventsSkipped.inc();
      this.options.logger?.error({ seq: item.seq, id: idOf(item), error: batch.error }, 'gateway permanently refused an event; skipping it');
      batch.status = 'acked';
    }
  }

  /**
   * A buffer that had to replace a damaged store mid-run starts a new epoch,
   * with seqs from 1 again: the window's batches and the cursor belong to the
   * old one. Forget them (sends still in flight finish unheeded) and start
   * from the new epoch's cursor; acking an old seq would mark new events
   * delivered. True when the epoch changed.
   */
  private followEpoch(): boolean {
    const { epoch, delivered } = this.buffer.state();
    if (epoch === this.epoch) return false;
    this.options.logger?.warn({ from: this.epoch, to: epoch, dropped: this.window.length }, 'buffer started a new epoch; push restarts from its cursor');
    this.window.length = 0;
    this.delivered = delivered;
    this.epoch = epoch;
    this.transport.epochChanged?.(epoch);
    this.transport.progress?.(delivered);
    return true;
  }

  /** Moves the delivered cursor over the acknowledged prefix of the window. */
  private async ackPrefix(): Promise<void> {
    // A new epoch: this window's acks name the old one, which the buffer would ignore; skip that commit.
    if (this.followEpoch()) return;
    let upTo = this.delivered;
    let n = 0;
    while (n < this.window.length && this.window[n]?.status === 'acked') {
      upTo = (this.window[n] as Batch).last;
      n += 1;
    }
    if (n === 0) return;
    // Durable first, then forget: if ack fails the batches stay and are resent. The ack names its epoch:
    // should the buffer replace its store before the ack is written, it changes nothing in the new one.
    await this.buffer.ack(upTo, this.epoch);
    this.window.splice(0, n);
    this.delivered = upTo;
    this.transport.progress?.(upTo);
  }

  private setState(state: PushState): void {
    if (state === this.current) return;
    this.current = state;
    this.options.logger?.debug({ state }, 'push state');
  }
}

/** A stored event's id, for a log line (parsed only on these rare paths). */
function idOf(item: StoredLine): string | undefined {
  return (JSON.parse(item.line) as ChainedEvent).id;
}

function monotonicNow(): number {
  return performance.now();
}
