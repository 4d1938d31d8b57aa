import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { errorCode, type PushState } from '../protocols/index.js';
import { refusedEvents } from './buffer/refused-events.js';
import type { BufferState } from './buffer/types.js';

const PUSH_STATES: readonly PushState[] = ['idle', 'sending', 'backoff', 'open', 'half-open', 'disabled'];

/**
 * The process metrics (CPU, memory, GC, event loop lag) are made once per
 * process and shared by every AgentMetrics. prom-client's
 * collectDefaultMetrics leaves a GC observer and an event-loop monitor
 * running for good, each holding the registry it was given: made per
 * AgentMetrics, every restart-reload (SIGHUP) kept the whole previous agent
 * (its buffer, listeners, registry) reachable.
 */
let processMetrics: Metric[] | undefined;

function sharedProcessMetrics(): Metric[] {
  if (processMetrics === undefined) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'meteorzx_agent_' });
    processMetrics = registry.getMetricsAsArray().flatMap((m) => registry.getSingleMetric(m.name) ?? []);
  }
  return processMetrics;
}

/**
 * Reloads (SIGHUP) whose new config could not start, over the life of the process: the agent then ran on
 * with its current config, restarted with it when it had been drained (cli/service-loop.ts). Shared like
 * the process metrics, since such a restart starts a new AgentMetrics.
 */
const reloadFailures = new Counter({
  name: 'meteorzx_agent_reload_failures_total',
  help: 'Reloads (SIGHUP) whose new config could not start (a port taken); the agent ran on with its current config',
  registers: [],
});

export function countReloadFailure(): void {
  reloadFailures.inc();
}

/** Where the gauges read their values at scrape time (nothing is copied on the hot path). */
export interface MetricsSources {
  buffer: () => BufferState;
  push: () => PushState;
}

/**
 * The agent's Prometheus metrics, in a registry of its own (never the global
 * one, so two agents in one test process do not collide). Rates come from
 * Prometheus (`rate(meteorzx_agent_events_in_total[1m])`), not from here.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  /** Events durably appended, per intake. */
  readonly eventsIn: Counter<'intake'>;
  /** Events an intake refused (invalid, over a limit), per intake. */
  readonly eventsInvalid: Counter<'intake'>;
  /** Events the gateway acknowledged. */
  readonly eventsOut: Counter;
  /** Events the gateway acknowledged but recorded as rejected (its answer lists them). */
  readonly eventsRejectedByGateway: Counter;
  /** Events skipped after a permanent refusal of a single-event batch (each also gets a gap event). */
  readonly eventsSkipped: Counter;
  /** Batch sends, by result: acked | retry | permanent. */
  readonly sends: Counter<'result'>;
  /** Events per append call (one intake request or one gap event). */
  readonly appendEvents: Histogram;
  /** Time from append call to durable (group commit incl. fsync), seconds. */
  readonly appendSeconds: Histogram;
  /** Appends the buffer refused, by error code. */
  readonly appendFailures: Counter<'code'>;
  /** Persistent sessions the edge broker ended because their device stayed away longer than `intake.mqtt.sessionExpiry`. */
  readonly mqttSessionsExpired: Counter;
  /** Connections to the pull listener refused at `pull.maxConnections` (each one held had a request in progress). */
  readonly pullConnectionsRefused: Counter;

  constructor(sources: MetricsSources, options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.eventsIn = new Counter({ name: 'meteorzx_agent_events_in_total', help: 'Events durably appended to the buffer', labelNames: ['intake'], registers });
    this.eventsInvalid = new Counter({ name: 'meteorzx_agent_events_invalid_total', help: 'Events refused by an intake (invalid or over a limit)', labelNames: ['intake'], registers });
    this.eventsOut = new Counter({ name: 'meteorzx_agent_events_out_total', help: 'Events acknowledged by the gateway', registers });
    this.eventsRejectedByGateway = new Counter({ name: 'meteorzx_agent_events_gateway_rejected_total', help: 'Events the gateway acknowledged as rejected', registers });
    this.eventsSkipped = new Counter({ name: 'meteorzx_agent_events_skipped_total', help: 'Events skipped after a permanent refusal (a gap event names each)', registers });
    this.sends = new Counter({ name: 'meteorzx_agent_push_sends_total', help: 'Batch sends to the gateway by result', labelNames: ['result'], registers });
    this.appendEvents = new Histogram({
      name: 'meteorzx_agent_append_events',
      help: 'Events per buffer append call',
      buckets: [1, 10, 50, 100, 250, 500, 1000],
      registers,
    });
    this.appendFailures = new Counter({
      name: 'meteorzx_agent_append_failures_total',
      help: 'Buffer appends refused, by error code (full, a failed write, closed while the database reopens); the intake answered 503/507',
      labelNames: ['code'],
      registers,
    });
    this.pullConnectionsRefused = new Counter({
      name: 'meteorzx_agent_pull_connections_refused_total',
      help: 'Connections to the pull listener refused at pull.maxConnections (every connection held had a request in progress)',
      registers,
    });
    this.mqttSessionsExpired = new Counter({
      name: 'meteorzx_agent_mqtt_sessions_expired_total',
      help: 'Persistent sessions of the edge MQTT broker ended (subscriptions and queued messages dropped) after their device stayed away longer than intake.mqtt.sessionExpiry',
      registers,
    });
    this.appendSeconds = new Histogram({
      name: 'meteorzx_agent_append_seconds',
      help: 'Latency of a buffer append until durable (group commit, fsync included)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    const gauge = (name: string, help: string, read: (s: BufferState) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(sources.buffer()));
        },
      });
    gauge('meteorzx_agent_buffered_events', 'Events held in the buffer and not yet delivered', (s) => s.bufferedEvents);
    gauge('meteorzx_agent_buffered_bytes', 'Bytes held in the buffer (delivered but retained included)', (s) => s.bufferedBytes);
    gauge('meteorzx_agent_head_seq', 'Last seq appended in the current epoch', (s) => s.head);
    gauge('meteorzx_agent_delivered_seq', 'Last seq acknowledged by the gateway (contiguous prefix)', (s) => s.delivered);
    gauge('meteorzx_agent_oldest_seq', 'Oldest seq still held', (s) => s.oldest);
    new Gauge({
      name: 'meteorzx_agent_push_state',
      help: 'Push sink state: 1 for the current state, 0 for the others',
      labelNames: ['state'],
      registers,
      collect() {
        const current = sources.push();
        for (const s of PUSH_STATES) this.set({ state: s }, s === current ? 1 : 0);
      },
    });
    this.registry.registerMetric(reloadFailures);
    if (options.processMetrics ?? true) for (const metric of sharedProcessMetrics()) this.registry.registerMetric(metric);
  }

  /** Times one append and records it; returns what append returned. */
  async timeAppend<T extends { length: number }>(events: number, append: () => Promise<T>): Promise<T> {
    const start = process.hrtime.bigint();
    let out: T;
    try {
      out = await append();
    } catch (err) {
      // An append refused for some of its events (too large once stored) is retried without them at once:
      // those are per-event rejections (events_invalid_total), not the buffer refusing the intake.
      if (refusedEvents(err) === undefined) this.appendFailures.inc({ code: errorCode(err) });
      throw err;
    }
    this.appendSeconds.observe(Number(process.hrtime.bigint() - start) / 1e9);
    this.appendEvents.observe(events);
    return out;
  }
}
