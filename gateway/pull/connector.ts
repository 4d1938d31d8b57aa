import type { Logger } from 'pino';
import type { IngestResponse, Limits } from '../../protocols/index.js';
import type { GatewayMetrics } from '../metrics.js';
import type { Ingestor } from '../pipeline/ingestor.js';
import { AgentBusy, AgentClient, RangeGone } from './agent-client.js';
import type { RaiseAlert } from '../alerts/alert-sink.js';
import type { Checkpoint, PullStore } from './pull-store.js';

const HOLE_REASON = `a hole in the agent's buffer (damage: the agent records a meteorzx.gap for the part it had not delivered)`;

/** The shortest wait on a busy answer (a Retry-After of 0, or a date already past). */
const MIN_BUSY_WAIT_MS = 1000;

export type ConnectorState = 'idle' | 'running' | 'retrying' | 'ok' | 'failed';

/** One connector in `GET /v1/sources` → `pulls`. */
export interface PullStatus {
  url: string;
  /** Agent id from the agent's /v1/status, once seen. */
  agent: string | null;
  state: ConnectorState;
  lastError: string | null;
  lastSuccess: string | null;
  lastAttempt: string | null;
  checkpoint: Checkpoint | null;
}

/** A seq range the agent could not serve. */
export interface GoneRange {
  epoch: string;
  from: number;
  to: number;
  reason: string;
}

export interface PullResult extends IngestResponse {
  url: string;
  agent: string | null;
  epoch: string;
  /** Events fetched from the agent (accepted + duplicates + rejected). */
  pulled: number;
  lastSeq: number;
  /** Ranges the agent answered 410 for, or left out of its answer: losses it has not recorded. */
  gone: GoneRange[];
  /**
   * Ranges the agent stepped over as holes in its buffer (damage): losses
   * it already recorded with its own `meteorzx.gap` event (reason
   * `buffer-corrupt`), so not `gone` — reporting them there would record
   * each a second time.
   */
  holes: GoneRange[];
}

export interface RangeRequest {
  /** Pull seqs > after… */
  after: number;
  /** …up to and including until (default: the agent's head). */
  until?: number;
  /** Only from this epoch (default: the agent's current one). */
  epoch?: string;
}

export interface ConnectorOptions {
  url: string;
  token?: string | undefined;
  ca?: string | Buffer | undefined;
  /** A client certificate and key, for an agent whose pull listener requires one (mutual TLS). */
  clientCert?: { cert: Buffer; key: Buffer };
  retries: { tries: number; delay: number };
  limits: Limits;
  ingestor: Ingestor;
  /** Where checkpoints live; an ad-hoc connector (POST /v1/pull for an unconfigured URL) has none. */
  store?: PullStore;
  /** Events per page asked of the agent. Default 1000. */
  pageEvents?: number;
  /** ms one request to the agent may take, whole answer included (`pullFrom[].timeout`). Default 2 min. */
  requestTimeoutMs?: number;
  /** About how many bytes a page may hold (the agent's `maxBytes`). Default `limits.maxBodyBytes` (8 MiB). */
  pageBytes?: number;
  alerter?: RaiseAlert;
  metrics?: GatewayMetrics | undefined;
  logger: Logger;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/** A checkpoint run, from its request to its end. */
interface RunTicket {
  /** Further attempts after a failed one (`retries.tries`); false for a manual run: one attempt. */
  retry: boolean;
  /** A manual run was asked for while this one waited out `retries.delay`: it ends at once, neither ok nor failed. */
  superseded: boolean;
}

/**
 * Pulls one agent's buffer into the pipeline (method `pull`). Every
 * operation on a connector — an attempt of a scheduled or manual run, a
 * range repair — goes through one lock, so two never run at once against
 * one agent; a run requested while another waits for the lock joins it
 * (coalesced). The wait between a failed attempt and the next is not an
 * operation and does not hold the lock, and a manual run cuts it short.
 * A run pages from the checkpoint to the head the agent had when the run
 * began, and saves the checkpoint after each page is durably stored.
 */
export class PullConnector {
  readonly url: string;
  private readonly client: AgentClient;
  private lock: Promise<unknown> = Promise.resolve();
  /** The run asked for that has not yet started its first attempt. */
  private queued: { ticket: RunTicket; result: Promise<PullResult | undefined> } | undefined;
  /** The run waiting out `retries.delay` between two attempts. */
  private waiting: RunTicket | undefined;
  private agent: string | null = null;
  private st: ConnectorState = 'idle';
  private lastError: string | null = null;
  private lastSuccess: string | null = null;
  private lastAttempt: string | null = null;
  private cp: Checkpoint | null = null;
  private active = 0;
  /** Most operations ever seen running at once (1 unless the lock is broken; tests read it). */
  maxConcurrent = 0;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;
  private closed = false;
  private wakeSleeper: (() => void) | undefined;

  constructor(private readonly options: ConnectorOptions) {
    this.url = options.url;
    this.client = new AgentClient({
      url: options.url,
      token: options.token,
      ca: options.ca,
      ...(options.clientCert === undefined ? {} : { clientCert: options.clientCert }),
      limits: options.limits,
      ...(options.requestTimeoutMs === undefined ? {} : { deadlineMs: options.requestTimeoutMs }),
    });
    // close() and a manual run cut a retry wait short: a 5-minute delay must hold neither a gateway's
    // shutdown nor an operator's POST /v1/pull.
    this.sleep =
      options.sleep ??
      ((ms) =>
        new Promise<void>((resolve) => {
          if (this.closed) {
            resolve();
            return;
          }
          const wake = () => {
            clearTimeout(timer);
            if (this.wakeSleeper === wake) this.wakeSleeper = undefined;
            resolve();
          };
          const timer = setTimeout(wake, ms);
          this.wakeSleeper = wake;
        }));
    this.now = options.now ?? Date.now;
  }

  get agentId(): string | null {
    return this.agent;
  }

  status(): PullStatus {
    return {
      url: this.url,
      agent: this.agent,
      state: this.st,
      lastError: this.lastError,
      lastSuccess: this.lastSuccess,
      lastAttempt: this.lastAttempt,
      checkpoint: this.cp,
    };
  }

  /** Loads the saved checkpoint (so status shows it before the first run). */
  async init(): Promise<void> {
    const cp = await this.options.store?.checkpoint(this.url);
    if (cp !== undefined) {
      this.cp = cp;
      this.agent = cp.agent ?? null;
    }
  }

  /** Learns the agent id from its /v1/status (for backfill matching); undefined when unreachable. */
  async identify(): Promise<string | undefined> {
    try {
      this.agent = (await this.client.status()).id;
      return this.agent;
    } catch {
      return undefined;
    }
  }

  /**
   * A run: from the checkpoint to the head, retried per policy
   * (`retries.tries` further attempts, `retries.delay` apart). Resolves
   * undefined when every attempt failed (the state says failed and an alert
   * went out), and when the run was cut short (close, or superseded by a
   * manual run).
   *
   * `manual` (POST /v1/pull) is one attempt, started now: a run waiting out
   * its retry delay ends at once, not counted as failed — the manual run
   * is its retry — and a queued run the manual one joins makes one attempt.
   */
  run(options: { manual?: boolean } = {}): Promise<PullResult | undefined> {
    const manual = options.manual === true;
    if (manual && this.waiting !== undefined) {
      this.waiting.superseded = true;
      this.wakeSleeper?.();
    }
    if (this.queued !== undefined) {
      // The operator waits for this answer: it must not wait out retries.delay.
      if (manual) this.queued.ticket.retry = false;
      return this.queued.result;
    }
    const ticket: RunTicket = { retry: !manual, superseded: false };
    const result = this.runWithRetries(ticket);
    this.queued = { ticket, result };
    return result;
  }

  /** Pulls exactly one range (backfill, POST /v1/pull with after/until); no checkpoint, no retries. */
  pullRange(range: RangeRequest): Promise<PullResult> {
    return this.exclusive(() => this.fetchRange(range));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeSleeper?.();
    // A request in flight ends now: an agent that trickles its answer must not hold the gateway's stop.
    this.client.abort();
    await this.lock.catch(() => undefined);
    await this.client.close();
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const guarded = async () => {
      this.active += 1;
      this.maxConcurrent = Math.max(this.maxConcurrent, this.active);
      try {
        return await fn();
      } finally {
        this.active -= 1;
      }
    };
    const next = this.lock.then(guarded, guarded);
    this.lock = next.catch(() => undefined);
    return next;
  }

  private async runWithRetries(ticket: RunTicket): Promise<PullResult | undefined> {
    const { retries, logger } = this.options;
    let attempts = 1;
    let started = false;
    /** ms waited on busy answers since the last failed attempt. */
    let busyWaited = 0;
    for (let attempt = 1; ; attempt += 1) {
      const outcome = await this.exclusive(async () => {
        if (!started) {
          started = true;
          if (this.queued?.ticket === ticket) this.queued = undefined;
          // Read only now: a manual run that joined while this one was queued made it one attempt.
          attempts = ticket.retry ? 1 + retries.tries : 1;
        }
        return this.closed ? undefined : this.attempt(attempt);
      });
      if (outcome === undefined) return this.closedRun();
      if (!(outcome instanceof Error)) return outcome;
      // A close (gateway shutdown) is no failure: no retry wait to hold the shutdown, no metric, no alert.
      if (this.closed) return this.closedRun();
      this.lastError = outcome.message;
      const busyWait = attempts > 1 && outcome instanceof AgentBusy ? Math.max(outcome.retryAfterMs, MIN_BUSY_WAIT_MS) : undefined;
      let wait = retries.delay;
      if (busyWait !== undefined && busyWaited + busyWait <= retries.delay) {
        // Up, and busy (its pull budget held by other pulls): asked again when it says, not a retries.delay
        // later, and not a failed attempt until the busy waits add up to one retries.delay.
        busyWaited += busyWait;
        wait = busyWait;
        attempt -= 1;
        logger.info({ err: this.lastError, retryInMs: busyWait }, 'pull: the agent is busy');
      } else {
        busyWaited = 0;
        logger.warn({ attempt, of: attempts, err: this.lastError }, 'pull failed');
        if (attempt >= attempts) return this.failed(attempts);
      }
      // A run queued behind this one starts from the checkpoint too: it is the retry, and it is not kept waiting.
      if (this.queued !== undefined) return this.supersededRun();
      this.st = 'retrying';
      this.waiting = ticket;
      try {
        await this.sleep(wait);
      } finally {
        this.waiting = undefined;
      }
      if (this.closed) return this.closedRun();
      if (ticket.superseded) return this.supersededRun();
    }
  }

  /** One attempt from the checkpoint, under the lock: its result, or the error it failed with. */
  private async attempt(attempt: number): Promise<PullResult | Error> {
    const { metrics } = this.options;
    this.st = attempt === 1 ? 'running' : 'retrying';
    this.lastAttempt = new Date(this.now()).toISOString();
    try {
      const result = await this.fetchFromCheckpoint();
      this.st = 'ok';
      this.lastError = null;
      this.lastSuccess = new Date(this.now()).toISOString();
      metrics?.pullRuns.inc({ url: this.url, result: 'ok' });
      metrics?.pullFailed.set({ url: this.url }, 0);
      return result;
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  private failed(attempts: number): undefined {
    const { metrics } = this.options;
    this.st = 'failed';
    metrics?.pullRuns.inc({ url: this.url, result: 'failed' });
    metrics?.pullFailed.set({ url: this.url }, 1);
    this.options.alerter?.raise({
      kind: 'pull-failed',
      url: this.url,
      ...(this.agent === null ? {} : { agent: this.agent }),
      detail: `pull from ${this.url} failed after ${attempts} attempt(s): ${this.lastError ?? 'unknown error'}`,
      at: new Date(this.now()).toISOString(),
    });
    return undefined;
  }

  /** Ends a run whose retry a manual run took over: the state and metrics are that run's to set. */
  private supersededRun(): undefined {
    this.options.logger.info({}, 'pull retry wait cut short: a manual run takes over');
    return undefined;
  }

  private closedRun(): undefined {
    this.st = 'idle';
    this.options.logger.info({}, 'pull stopped: the connector is closing');
    return undefined;
  }

  private async fetchFromCheckpoint(): Promise<PullResult> {
    const status = await this.client.status();
    this.agent = status.id;
    const saved = this.cp ?? (await this.options.store?.checkpoint(this.url)) ?? null;
    // A new epoch at the agent (a wiped buffer) starts from its seq 0.
    const after = saved !== null && saved.epoch === status.epoch ? saved.seq : 0;
    return this.page({ after, until: status.head, epoch: status.epoch }, true);
  }

  private async fetchRange(range: RangeRequest): Promise<PullResult> {
    let { epoch, until } = range;
    if (epoch === undefined || until === undefined) {
      const status = await this.client.status();
      this.agent = status.id;
      if (epoch === undefined) {
        epoch = status.epoch;
        // Seqs past the head are not written yet, not gone: `meteorzx pull --into --limit` larger than what is left asks for them.
        until = Math.min(until ?? status.head, status.head);
      }
      until ??= status.head;
    }
    return this.page({ after: range.after, until, epoch }, false);
  }

  private async page(range: Required<RangeRequest>, checkpoint: boolean): Promise<PullResult> {
    const pageEvents = this.options.pageEvents ?? 1000;
    const result: PullResult = { url: this.url, agent: this.agent, epoch: range.epoch, pulled: 0, accepted: 0, duplicates: 0, rejected: [], lastSeq: range.after, gone: [], holes: [] };
    let after = range.after;
    while (after < range.until) {
      if (this.closed) throw new Error('pull connector closed');
      let page;
      try {
        page = await this.client.page(after, Math.min(pageEvents, range.until - after), range.epoch, this.options.pageBytes ?? this.options.limits.maxBodyBytes);
      } catch (err) {
        if (!(err instanceof RangeGone)) throw err;
        if (err.epoch !== range.epoch || err.oldest > range.until) {
          result.gone.push({ epoch: range.epoch, from: after + 1, to: range.until, reason: err.message });
          break;
        }
        result.gone.push({ epoch: range.epoch, from: after + 1, to: err.oldest - 1, reason: err.message });
        after = err.oldest - 1;
        continue;
      }
      if (page.items.length === 0) {
        if (page.holesTo === undefined) {
          result.gone.push({ epoch: range.epoch, from: after + 1, to: range.until, reason: `the agent answered without seqs ${after + 1}..${range.until}` });
          break;
        }
        // Holes up to the agent's head: damage it recorded itself, as a hole between two lines is. Past them is the next run's.
        const to = Math.min(page.holesTo, range.until);
        result.holes.push({ epoch: range.epoch, from: after + 1, to, reason: HOLE_REASON });
        after = to;
        result.lastSeq = after;
        if (checkpoint) await this.saveCheckpoint({ epoch: range.epoch, seq: after, ...(this.agent === null ? {} : { agent: this.agent }) });
        continue;
      }
      // An agent answering seqs it was not asked for would have this loop fetch the same page for ever.
      if (page.lastSeq <= after) throw new Error(`${this.url}: the page after seq ${after} makes no progress (its last seq is ${page.lastSeq})`);
      // Stepping over a hole, a page can reach past `until`: what lies past it is another range's (the next run's).
      const past = page.seqs.findIndex((seq) => seq > range.until);
      const items = past < 0 ? page.items : page.items.slice(0, past);
      const lastSeq = past < 0 ? page.lastSeq : range.until;
      for (const [from, to] of page.skipped) {
        if (from > lastSeq) continue;
        const hole = { epoch: range.epoch, from, to: Math.min(to, lastSeq), reason: HOLE_REASON };
        result.holes.push(hole);
      }
      if (items.length > 0) {
        const answer = await this.options.ingestor.ingest(items, { method: 'pull', peer: this.url });
        result.pulled += items.length;
        result.accepted += answer.accepted;
        result.duplicates += answer.duplicates;
        for (const r of answer.rejected) result.rejected.push({ index: result.pulled - items.length + r.index, error: r.error });
      }
      after = lastSeq;
      result.lastSeq = after;
      if (checkpoint) await this.saveCheckpoint({ epoch: range.epoch, seq: after, ...(this.agent === null ? {} : { agent: this.agent }) });
    }
    if (checkpoint && after === range.after && this.cp?.epoch !== range.epoch) {
      await this.saveCheckpoint({ epoch: range.epoch, seq: after, ...(this.agent === null ? {} : { agent: this.agent }) });
    }
    return result;
  }

  private async saveCheckpoint(cp: Checkpoint): Promise<void> {
    this.cp = cp;
    await this.options.store?.saveCheckpoint(this.url, cp);
  }
}
