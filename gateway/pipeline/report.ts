import type { Logger } from 'pino';
import type { IngestResponse } from '../../protocols/index.js';
import type { GatewayMetrics } from '../metrics.js';
import type { IngestContext } from './ingestor.js';
import type { PipelineAlert } from './options.js';
import type { PendingIngest } from './run-stages.js';

export interface ReportSinks {
  metrics?: GatewayMetrics | undefined;
  onAlert: (alert: PipelineAlert) => void;
  /** Accepted events per source (the volume-drop watch); absent, the commit is not walked for it. */
  countAccepted?: ((source: string, n: number) => void) | undefined;
  logger?: Pick<Logger, 'warn' | 'error'> | undefined;
}

/**
 * After a commit is durable: metrics and alerts for its callers. Counters
 * are summed per method over the whole commit and incremented once (a
 * labelled prom-client increment costs a label lookup, and MQTT brings one
 * caller per event); latency is observed per caller.
 */
export function reportCommit(entries: readonly PendingIngest[], responses: readonly IngestResponse[], now: number, sinks: ReportSinks): void {
  const { metrics } = sinks;
  if (metrics !== undefined) {
    const totals = new Map<IngestContext['method'], { accepted: number; duplicates: number }>();
    entries.forEach((entry, i) => {
      const response = responses[i] as IngestResponse;
      const method = entry.ctx.method;
      let t = totals.get(method);
      if (t === undefined) {
        t = { accepted: 0, duplicates: 0 };
        totals.set(method, t);
      }
      t.accepted += response.accepted;
      t.duplicates += response.duplicates;
      if (response.rejected.length > 0) {
        for (const item of entry.items) if (item.rejected !== undefined) metrics.rejected.inc({ method, stage: item.rejected.stage });
      }
      metrics.pipelineLatency.observe((now - entry.startedAt) / 1000);
    });
    for (const [method, t] of totals) {
      if (t.accepted > 0) metrics.accepted.inc({ method }, t.accepted);
      if (t.duplicates > 0) metrics.duplicates.inc({ method }, t.duplicates);
    }
  }
  // Per source, in runs: a batch is mostly one source (an agent's push, an MQTT client's burst), so
  // the watch is told once per run rather than once per event.
  const count = sinks.countAccepted;
  let runSource = '';
  let run = 0;
  for (const entry of entries) {
    for (const item of entry.items) {
      if (count !== undefined && item.stored !== undefined) {
        if (item.stored.source === runSource) run += 1;
        else {
          if (run > 0) count(runSource, run);
          runSource = item.stored.source;
          run = 1;
        }
      }
      if (item.alerts === undefined) continue;
      for (const alert of item.alerts) {
        // alerts_total is the sink's to count, with every other alert of the gateway.
        if (alert.kind === 'chain-break') metrics?.chainBreaks.inc();
        const event = item.stored ?? item.event;
        if (event === undefined) continue;
        try {
          sinks.onAlert({ ...alert, event, at: entry.receivedAt });
        } catch (err) {
          sinks.logger?.error({ err }, 'alert sink failed');
        }
      }
    }
  }
  if (count !== undefined && run > 0) count(runSource, run);
}
