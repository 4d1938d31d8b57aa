import type { Logger } from 'pino';
import type { PushState } from '../../protocols/index.js';
import type { AgentBuffer } from '../buffer/types.js';
import type { AgentMetrics } from '../metrics.js';
import { Backoff } from './backoff.js';
import type { Batch } from './batch.js';
import { BatchCap } from './batch-cap.js';
import { BatchReader } from './batch-reader.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { halveUnanswered, idOf, resolvePermanent, type RefusalContext } from './refusals.js';
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
  private readonly reader: BatchReader;
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
    this.reader = new BatchReader(buffer, {
      maxWaitMs: options.maxWaitMs,
      ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }),
      cap: this.cap,
      now: this.now,
      stalled: (error) => (this.lastError = error),
      ...(options.logger === undefined ? {} : { logger: options.logger }),
    });
  }

  async start(): Promise<void> {
    if (this.loop !== undefined) return;
    const { delivered, epoch } = this.buffer.state();
    this.delivered = delivered;
    this.epoch = epoch;
    this.transport.progress?.(delivered);
    await this.transport.start();
    this.unsubscribe = this.buffer.onAppend(() => this.wake.notify());
    // The window is one run of seqs after the cursor, every one of them in memory (see BatchReader.reload).
    if (this.buffer.holdInMemory !== undefined) {
      this.buffer.holdInMemory(() => ({ epoch: this.epoch, upTo: this.window.at(-1)?.last ?? this.delivered }));
      this.reader.holds = true;
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
    halveUnanswered(this.refusals());
    await resolvePermanent(this.refusals());
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
        const next = await this.reader.next(this.window.at(-1)?.last ?? this.delivered, this.failureRound);
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

  /** Sends a batch of the window again (what the buffer holds of it now, see BatchReader.reload); one with nothing left is settled. */
  private async relaunch(batch: Batch, launched: Set<Batch>): Promise<void> {
    launched.add(batch);
    if (batch.status === 'failed') await this.reader.reload(batch);
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

  /** What the handling of refused and unanswered batches works on (refusals.ts). */
  private refusals(): RefusalContext {
    return {
      window: this.window,
      round: () => this.failureRound,
      takenSince: (batch) => this.takenSince(batch),
      cap: this.cap,
      buffer: this.buffer,
      ...(this.options.logger === undefined ? {} : { logger: this.options.logger }),
      ...(this.options.metrics === undefined ? {} : { metrics: this.options.metrics }),
    };
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

function monotonicNow(): number {
  return performance.now();
}
