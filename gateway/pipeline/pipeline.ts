import { performance } from 'node:perf_hooks';
import { DEFAULT_LIMITS, errorCode, type BatchItem, type IngestResponse } from '../../protocols/index.js';
import { GatewayErrors } from '../errors.js';
import type { CommitBatch } from '../storage/types.js';
import { GroupCommitter, type Prepared } from './committer/group-committer.js';
import { anyFailed, InFlightCommits, pendingIn, type InFlightCommit } from './committer/in-flight.js';
import { Dedup } from './dedup/dedup.js';
import type { IngestContext, Ingestor } from './ingestor.js';
import { ChainTracker } from './integrity/integrity.js';
import { eventAlert } from '../alerts/alert.js';
import { AlertSink } from '../alerts/alert-sink.js';
import type { PipelineAlert, PipelineOptions } from './options.js';
import { Rules } from './rules/rules.js';
import { reportCommit } from './report.js';
import { runStages, type PendingIngest } from './run-stages.js';
import { Transforms } from './transforms/transforms.js';
import { validateItem } from './validate/validate.js';

export interface Pipeline extends Ingestor {
  start(): Promise<void>;
  /** Stops taking events, commits what is queued, stops retention. Idempotent. */
  close(): Promise<void>;
}

const HOUR = 3_600_000;

/**
 * The gateway pipeline: validate (on the caller's turn, so bad input costs
 * no queue space) → group commit queue → integrity → transforms → rules →
 * dedup → one synced `storage.commit` → each caller's answer. Commits are
 * pipelined: batch k+1 runs its stages while batch k's write is in flight
 * (dedup sees k's ids as pending; if k fails, k+1 fails too). Every
 * attempt — accepted, duplicate, rejected — gets a custody record in the
 * same write as the events, so an answer is only ever given for what is
 * durable. Rules and transforms compile here: a bad one throws a config
 * error before anything listens.
 */
export function createPipeline(opts: PipelineOptions): Pipeline {
  const { storage, config, metrics } = opts;
  const clock = opts.clock ?? Date.now;
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const transforms = new Transforms(config.pipeline.transforms, config.pipeline.hashKey);
  const rules = new Rules(config.pipeline.rules, { costLimit: config.pipeline.ruleCostLimit });
  const tracker = new ChainTracker((agent, epoch) => storage.chainHead(agent, epoch), opts.maxChains);
  const dedup = new Dedup(storage, {
    windowMs: config.pipeline.dedup.window,
    cacheSize: config.pipeline.dedup.cacheSize,
    clock,
    ...(metrics === undefined ? {} : { onCacheHits: (n: number) => metrics.dedupCacheHits.inc(n) }),
  });
  const onAlert = opts.onAlert ?? logAlerts(opts);
  const stages = { tracker, transforms, rules, dedup, limits, gatewayName: opts.gatewayName, onRuleError: ruleErrorSink(metrics, opts.logger) };
  const sinks = { metrics, onAlert, countAccepted: opts.countAccepted, logger: opts.logger };

  const inFlight = new InFlightCommits();

  /**
   * Stage one of a commit, run in arrival order: the stages, then the write
   * is handed to storage (which plans it in call order and writes it after
   * the previous one). Returns while that write is in flight, so the
   * committer can prepare the next batch meanwhile.
   */
  async function prepare(entries: PendingIngest[]): Promise<Prepared<IngestResponse>> {
    const earlier = inFlight.snapshot();
    let staged: Awaited<ReturnType<typeof runStages>>;
    try {
      staged = await runStages(entries, { ...stages, pending: pendingIn(earlier) });
    } catch (err) {
      tracker.reset(); // its positions moved past what storage holds
      throw err;
    }
    if (anyFailed(earlier)) {
      // This batch may have called that commit's ids duplicates, and its chain positions followed it.
      tracker.reset();
      throw GatewayErrors.METEORZX_STORAGE_FAILED('an earlier commit failed while this one was being prepared; nothing of it was stored');
    }
    const { batch, responses } = staged;
    const commit = inFlight.begin(new Set(batch.events.map((e) => e.id)));
    const began = performance.now();
    const write = storage.commit(batch);
    return { done: finish(entries, batch, responses, { commit, earlier, write, began }) };
  }

  async function finish(
    entries: PendingIngest[],
    batch: CommitBatch,
    responses: IngestResponse[],
    w: { commit: InFlightCommit; earlier: readonly InFlightCommit[]; write: Promise<unknown>; began: number },
  ): Promise<IngestResponse[]> {
    try {
      await w.write;
    } catch (err) {
      metrics?.commitFailures.inc({ code: errorCode(err) });
      // Not durable: whatever was prepared on top of it must fail too (see InFlightCommits).
      w.commit.fail();
      tracker.reset(); // its positions moved past what storage holds
      w.commit.end();
      throw err;
    }
    // Storage settles commits in call order, so the earlier ones are settled by now; this guards a
    // backend that settles out of order. If one failed, this commit is durable but may have called
    // that one's ids duplicates: answer an error (the callers retry; dedup makes that harmless), but
    // do not mark it failed — what was built on it is sound, and a failure must not cascade.
    if (w.earlier.length > 0) {
      await Promise.all(w.earlier.map((c) => c.settled));
      if (anyFailed(w.earlier)) {
        tracker.reset();
        w.commit.end();
        throw GatewayErrors.METEORZX_STORAGE_FAILED('an earlier commit failed, and this one was prepared on top of it; retry');
      }
    }
    metrics?.commitLatency.observe((performance.now() - w.began) / 1000);
    metrics?.commitBatchSize.observe(batch.custody.length);
    for (const entry of entries) {
      for (const item of entry.items) if (item.stored !== undefined) dedup.rememberId(item.stored.id, entry.receivedMs);
    }
    reportCommit(entries, responses, performance.now(), sinks);
    // Only now, with its ids in the dedup cache, does the next preparation stop seeing it as in flight.
    w.commit.end();
    return responses;
  }

  const committer = new GroupCommitter<PendingIngest, IngestResponse>(
    {
      maxEvents: config.commit.maxEvents,
      maxWaitMs: config.commit.maxWaitMs,
      maxQueuedEvents: opts.maxQueuedEvents ?? 20 * config.commit.maxEvents,
      ...(opts.maxInFlightCommits === undefined ? {} : { maxInFlight: opts.maxInFlightCommits }),
      ...(metrics === undefined
        ? {}
        : {
            onDepth: (n: number) => metrics.setQueueDepth(n),
            // Counted as received, neither stored nor recorded: without this they looked lost.
            onRefused: (entry: PendingIngest, err: unknown) => metrics.refused.inc({ method: entry.ctx.method, code: errorCode(err) }, entry.items.length),
          }),
    },
    (entry) => entry.items.length,
    prepare,
  );

  let retentionTimer: ReturnType<typeof setInterval> | undefined;
  let retentionRun: Promise<unknown> = Promise.resolve();
  const retention = config.storage?.retention;
  let retentionBusy = false;
  const runRetention = (): void => {
    // A pass still running (a large day to delete) is not queued behind by another.
    if (retention === undefined || retentionBusy) return;
    retentionBusy = true;
    retentionRun = storage
      .applyRetention(clock() - retention)
      .catch((err: unknown) => opts.logger?.error({ err }, 'retention failed'))
      .finally(() => (retentionBusy = false));
  };
  let started = false;
  let closed = false;
  // Receive times never go back, though the wall clock may (an NTP step): queries and their cursors follow
  // the store in (day of receipt, commit) order, so a commit dated before the one a cursor stands on would
  // never be paged to, and retention deletes by the same days. While the clock is behind, events take the
  // latest receive time so far.
  let lastReceivedMs = Number.NEGATIVE_INFINITY;
  const receivedNow = (): number => {
    const now = clock();
    if (now > lastReceivedMs) lastReceivedMs = now;
    return lastReceivedMs;
  };
  // Receive times repeat within a millisecond (one MQTT event per ingest, thousands a second): format each once.
  let lastMs = Number.NaN;
  let lastIso = '';
  const isoAt = (ms: number): string => {
    if (ms !== lastMs) {
      lastMs = ms;
      lastIso = new Date(ms).toISOString();
    }
    return lastIso;
  };

  return {
    async start() {
      if (started) return;
      started = true;
      if (retention !== undefined) {
        runRetention();
        retentionTimer = setInterval(runRetention, HOUR);
        retentionTimer.unref();
      }
    },

    async ingest(items: readonly BatchItem[], ctx: IngestContext): Promise<IngestResponse> {
      if (closed) throw GatewayErrors.METEORZX_PIPELINE_CLOSED('the pipeline is closed');
      const startedAt = performance.now();
      const receivedMs = receivedNow();
      const receivedAt = isoAt(receivedMs);
      metrics?.countReceived(ctx.method, items.length);
      if (items.length === 0) return { accepted: 0, duplicates: 0, rejected: [] };
      const prepared = items.map((item) => validateItem(item, ctx, limits, receivedAt));
      return committer.submit({ items: prepared, ctx, receivedAt, receivedMs, startedAt });
    },

    async close() {
      closed = true;
      if (retentionTimer !== undefined) clearInterval(retentionTimer);
      await committer.close();
      await retentionRun;
    },
  };
}

/**
 * A rule whose condition fails on an event (`data.n > 5` on a string) does
 * not match it: a drop rule that always fails never drops. Each failure is
 * counted per rule (`meteorzx_gateway_rule_errors_total`), and logged at
 * most once a minute per rule, with the first line of the reason.
 */
function ruleErrorSink(metrics: PipelineOptions['metrics'], logger: PipelineOptions['logger'], now: () => number = Date.now): (rule: string, message: string) => void {
  const loggedAt = new Map<string, number>();
  return (rule, message) => {
    metrics?.ruleErrors.inc({ rule });
    const t = now();
    if (t - (loggedAt.get(rule) ?? -Infinity) < 60_000) return;
    loggedAt.set(rule, t);
    logger?.warn({ rule, error: message }, 'rule condition failed on an event; taken as no match');
  };
}

/** With no sink given (a pipeline on its own): alerts are logged and counted, as the gateway's sink does without a webhook. */
function logAlerts(opts: PipelineOptions): (alert: PipelineAlert) => void {
  const sink = new AlertSink({ metrics: opts.metrics, logger: opts.logger ?? { warn: () => undefined } });
  return (alert) => sink.raise(eventAlert(alert));
}
