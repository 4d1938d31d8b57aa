import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Reloads (SIGHUP) whose new config could not start, over the life of the process, by metric prefix: the
 * gateway then started again with its current config (cli/service-loop.ts), with a new GatewayMetrics.
 */
const reloadFailures = new Map<string, Counter>();

function reloadFailuresCounter(prefix: string): Counter {
  let counter = reloadFailures.get(prefix);
  if (counter === undefined) {
    counter = new Counter({
      name: `${prefix}reload_failures_total`,
      help: 'Reloads (SIGHUP) whose new config could not start (a port taken); the gateway ran on with its current config',
      registers: [],
    });
    reloadFailures.set(prefix, counter);
  }
  return counter;
}

export function countReloadFailure(prefix = 'meteorzx_gateway_'): void {
  reloadFailuresCounter(prefix).inc();
}

/**
 * The gateway's Prometheus metrics, on their own Registry (never the global
 * one, so two gateways in one test process do not collide). `GET /metrics`
 * serves `registry.metrics()` with `registry.contentType`.
 */
export class GatewayMetrics {
  readonly registry: Registry;
  /** Events that reached the pipeline, per ingress method (mqtt, http, pull). */
  readonly received: Counter<'method'>;
  readonly accepted: Counter<'method'>;
  readonly duplicates: Counter<'method'>;
  /** Rejections per method and stage (decode, validate, rule). */
  readonly rejected: Counter<'method' | 'stage'>;
  /**
   * Events received whose ingest was answered with an error (queue full, a failed commit, shutting down), by
   * error code: neither stored nor recorded; the sender retries them, and they are received again.
   */
  readonly refused: Counter<'method' | 'code'>;
  /** Seconds from `ingest()` to its durable answer. */
  readonly pipelineLatency: Histogram;
  /** Seconds one synced storage commit takes. */
  readonly commitLatency: Histogram;
  /** Ingestion attempts per group commit. */
  readonly commitBatchSize: Histogram;
  /** Storage commits that failed (nothing of them stored; their callers retry), by error code. */
  readonly commitFailures: Counter<'code'>;
  /** Events whose agent hash chain did not verify on arrival (stored, flagged). */
  readonly chainBreaks: Counter;
  /** Set by the MQTT ingress. */
  readonly mqttClients: Gauge;
  /** Persistent MQTT sessions ended because their client stayed away longer than `mqtt.sessionExpiry`. */
  readonly mqttSessionsExpired: Counter;
  /** Ids answered by the in-memory dedup cache without a storage read. */
  readonly dedupCacheHits: Counter;
  /** Ingestion attempts waiting for a group commit. */
  readonly queueDepth: Gauge;
  /** Alerts raised, by rule name (a rule alert) or alert kind (chain-break, pull-failed, gap-lost, seq-gap, volume-drop, registry-repaired). */
  readonly alerts: Counter<'rule'>;
  /** Alerts not delivered to `alerts.webhook` (queue-full, post-failed, shutdown); still logged and counted in `alerts`. */
  readonly alertsDropped: Counter<'reason'>;
  readonly ruleErrors: Counter<'rule'>;
  /** Pull connector runs per agent URL and result (ok, failed) — issue 5, gateway/pull. */
  readonly pullRuns: Counter<'url' | 'result'>;
  /** 1 while a pull connector's last run failed after all its retries, else 0. */
  readonly pullFailed: Gauge<'url'>;
  /** Seq ranges recorded as lost because no agent could serve them any more. */
  readonly gapsLost: Counter;
  /** Stored blocks a read (GET /v1/events, /v1/custody) could not decode and left out of its answer, by kind (event, custody). */
  readonly damagedReads: Counter<'kind'>;
  /** HTTP connections refused at http.maxConnections (none could give way: every one had a request in progress). */
  readonly httpConnectionsRefused: Counter;
  /** MQTT connections refused at mqtt.maxConnections (none could give way: every one was a connected client). */
  readonly mqttConnectionsRefused: Counter;
  /**
   * The hot path's counts, kept in plain fields and handed to prom-client
   * when the metrics are collected (a scrape, or `get()`): with one MQTT
   * event per ingest, a labelled increment and a gauge set per call (label
   * validation and hashing each time) were a measurable share of the
   * gateway's CPU per message.
   */
  private readonly receivedPending = new Map<string, number>();
  private depth = 0;

  constructor(prefix = 'meteorzx_gateway_') {
    const registry = new Registry();
    this.registry = registry;
    const registers = [registry];
    const pending = this.receivedPending;
    this.received = new Counter({
      name: `${prefix}events_received_total`,
      help: 'Events received',
      labelNames: ['method'],
      registers,
      collect() {
        for (const [method, n] of pending) this.inc({ method }, n);
        pending.clear();
      },
    });
    this.accepted = new Counter({ name: `${prefix}events_accepted_total`, help: 'Events stored', labelNames: ['method'], registers });
    this.duplicates = new Counter({
      name: `${prefix}events_duplicate_total`,
      help: 'Events dropped as repeats of a stored id',
      labelNames: ['method'],
      registers,
    });
    this.rejected = new Counter({
      name: `${prefix}events_rejected_total`,
      help: 'Events rejected (recorded in custody with the reason)',
      labelNames: ['method', 'stage'],
      registers,
    });
    this.refused = new Counter({
      name: `${prefix}events_refused_total`,
      help: 'Events received but answered with an error (overloaded, storage failed, shutting down): not stored; the sender retries them',
      labelNames: ['method', 'code'],
      registers,
    });
    this.pipelineLatency = new Histogram({
      name: `${prefix}pipeline_latency_seconds`,
      help: 'Time from ingest to durable answer',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.commitLatency = new Histogram({
      name: `${prefix}store_commit_latency_seconds`,
      help: 'Time of one synced storage commit',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.commitBatchSize = new Histogram({
      name: `${prefix}store_commit_batch_size`,
      help: 'Ingestion attempts per group commit',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
      registers,
    });
    this.commitFailures = new Counter({
      name: `${prefix}store_commit_failures_total`,
      help: 'Storage commits that failed: nothing of them was stored, their callers retry (a full disk, a broken database)',
      labelNames: ['code'],
      registers,
    });
    this.chainBreaks = new Counter({ name: `${prefix}chain_breaks_total`, help: 'Events whose agent chain was broken on arrival', registers });
    this.mqttClients = new Gauge({ name: `${prefix}mqtt_clients`, help: 'Connected MQTT clients', registers });
    this.mqttSessionsExpired = new Counter({
      name: `${prefix}mqtt_sessions_expired_total`,
      help: 'Persistent MQTT sessions ended (subscriptions and queued messages dropped) after their client stayed away longer than mqtt.sessionExpiry',
      registers,
    });
    this.dedupCacheHits = new Counter({ name: `${prefix}dedup_cache_hits_total`, help: 'Dedup lookups answered from memory', registers });
    const depth = (): number => this.depth;
    this.queueDepth = new Gauge({
      name: `${prefix}ingest_queue_depth`,
      help: 'Events waiting for a group commit',
      registers,
      collect() {
        this.set(depth());
      },
    });
    this.alerts = new Counter({ name: `${prefix}alerts_total`, help: 'Alerts raised, by rule name or alert kind', labelNames: ['rule'], registers });
    this.alertsDropped = new Counter({
      name: `${prefix}alerts_dropped_total`,
      help: 'Alerts not delivered to the webhook (queue full, POST failed, shutdown); they were logged and counted',
      labelNames: ['reason'],
      registers,
    });
    this.ruleErrors = new Counter({
      name: `${prefix}rule_errors_total`,
      help: 'Events on which a rule condition failed (taken as no match)',
      labelNames: ['rule'],
      registers,
    });
    this.pullRuns = new Counter({ name: `${prefix}pull_runs_total`, help: 'Pull connector runs', labelNames: ['url', 'result'], registers });
    this.pullFailed = new Gauge({ name: `${prefix}pull_failed`, help: 'Pull connector failed after its retries (1) or not (0)', labelNames: ['url'], registers });
    this.gapsLost = new Counter({ name: `${prefix}gaps_lost_total`, help: 'Seq ranges recorded as lost (meteorzx.gap)', registers });
    this.damagedReads = new Counter({
      name: `${prefix}damaged_blocks_read_total`,
      help: 'Stored blocks a query could not decode and left out of its answer (named in X-Damaged-Blocks), by kind',
      labelNames: ['kind'],
      registers,
    });
    this.httpConnectionsRefused = new Counter({
      name: `${prefix}http_connections_refused_total`,
      help: 'HTTP connections refused at http.maxConnections (every connection held had a request in progress)',
      registers,
    });
    this.mqttConnectionsRefused = new Counter({
      name: `${prefix}mqtt_connections_refused_total`,
      help: 'MQTT connections refused at mqtt.maxConnections (every connection held was a connected client)',
      registers,
    });
    registry.registerMetric(reloadFailuresCounter(prefix));
  }

  /** Counts events that reached the pipeline (added to `received` when collected). */
  countReceived(method: string, n: number): void {
    this.receivedPending.set(method, (this.receivedPending.get(method) ?? 0) + n);
  }

  /** Records the ingest queue's depth (read by `queueDepth` when collected). */
  setQueueDepth(events: number): void {
    this.depth = events;
  }
}

export function createGatewayMetrics(): GatewayMetrics {
  return new GatewayMetrics();
}
