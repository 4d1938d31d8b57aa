import { performance } from 'node:perf_hooks';
import { DEFAULT_LIMITS, type BatchItem, type IngestResponse } from '../../protocols/index.js';
import { GatewayErrors } from '../errors.js';
import { GroupCommitter } from './committer/group-committer.js';
import { Dedup } from './dedup/dedup.js';
import type { IngestContext, Ingestor } from './ingestor.js';
import { ChainTracker } from './integrity/integrity.js';
import type { PipelineAlert, PipelineOptions } from './options.js';
import { Rules } from './rules/rules.js';
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
 * dedup → one synced `storage.commit` → each caller's answer. Every
 * attempt — accepted, duplicate, rejected — gets a custody record in the
 * same write as the events, so an answer is only ever given for what is
 * durable. Rules and transforms compile here: a bad one throws a config
 * error before anything listens.
 */
export function createPipeline(opts: PipelineOptions): Pipeline {
  const { storage, config, metrics } = opts;
  const clock = opts.clock ?? Date.now;
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const transforms = new Transforms(config.pipeline.transforms);
  const rules = new Rules(config.pipeline.rules);
  const tracker = new ChainTracker((agent, epoch) => storage.chainHead(agent, epoch), opts.maxChains);
  const dedup = new Dedup(storage, {
    windowMs: config.pipeline.dedup.window,
    cacheSize: config.pipeline.dedup.cacheSize,
    clock,
    ...(metrics === undefined ? {} : { onCacheHits: (n: number) => metrics.dedupCacheHits.inc(n) }),
  });
  const onAlert =
    opts.onAlert ?? ((a: PipelineAlert) => opts.logger?.warn({ alert: a.kind, rule: a.rule, detail: a.detail, id: a.event.id, source: a.event.source }, 'alert'));
  const stages = { tracker, transforms, rules, dedup, limits, gatewayName: opts.gatewayName };

  async function process(entries: PendingIngest[]): Promise<IngestResponse[]> {
    const { batch, responses } = await runStages(entries, stages);
    const began = performance.now();
    try {
      await storage.commit(batch);
    } catch (err) {
      tracker.reset(); // its positions moved past what storage holds
      throw err;
    }
    metrics?.commitLatency.observe((performance.now() - began) / 1000);
    metrics?.commitBatchSize.observe(batch.custody.length);
    const now = performance.now();
    entries.forEach((entry, i) => {
      dedup.remember(
        entry.items.flatMap((item) => (item.stored === undefined ? [] : [item.stored.id])),
        entry.receivedMs,
      );
      report(entry, responses[i] as IngestResponse, now);
    });
    return responses;
  }

  function report(entry: PendingIngest, response: IngestResponse, now: number): void {
    const method = entry.ctx.method;
    if (metrics !== undefined) {
      metrics.accepted.inc({ method }, response.accepted);
      metrics.duplicates.inc({ method }, response.duplicates);
      for (const item of entry.items) if (item.rejected !== undefined) metrics.rejected.inc({ method, stage: item.rejected.stage });
      metrics.pipelineLatency.observe((now - entry.startedAt) / 1000);
    }
    for (const item of entry.items) {
      for (const alert of item.alerts ?? []) {
        if (alert.kind === 'chain-break') metrics?.chainBreaks.inc();
        else metrics?.alerts.inc({ rule: alert.rule ?? '' });
        const event = item.stored ?? item.event;
        if (event === undefined) continue;
        try {
          onAlert({ ...alert, event, at: entry.receivedAt });
        } catch (err) {
          opts.logger?.error({ err }, 'alert sink failed');
        }
      }
    }
  }

  const committer = new GroupCommitter<PendingIngest, IngestResponse>(
    {
      maxEvents: config.commit.maxEvents,
      maxWaitMs: config.commit.maxWaitMs,
      maxQueuedEvents: opts.maxQueuedEvents ?? 20 * config.commit.maxEvents,
      ...(metrics === undefined ? {} : { onDepth: (n: number) => metrics.queueDepth.set(n) }),
    },
    (entry) => entry.items.length,
    process,
  );

  let retentionTimer: ReturnType<typeof setInterval> | undefined;
  let retentionRun: Promise<unknown> = Promise.resolve();
  const retention = config.storage?.retention;
  const runRetention = (): void => {
    if (retention === undefined) return;
    retentionRun = storage.applyRetention(clock() - retention).catch((err: unknown) => opts.logger?.error({ err }, 'retention failed'));
  };
  let started = false;
  let closed = false;

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
      const receivedMs = clock();
      const receivedAt = new Date(receivedMs).toISOString();
      metrics?.received.inc({ method: ctx.method }, items.length);
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
