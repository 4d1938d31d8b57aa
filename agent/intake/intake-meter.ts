import { Counter, Gauge } from 'prom-client';
import { perRegistry } from '../../common/per-registry.js';
import type { AgentMetrics } from '../metrics.js';

/**
 * What a reading intake (files, syslog, serial, edge MQTT) reports, per
 * intake name: events in, invalid records, drops with their reason, I/O
 * errors, and whether it is paused because the buffer is full. The counters
 * of AgentMetrics carry the first two; the others are registered here in the
 * agent's registry (once per registry, shared by every intake).
 */
export interface IntakeMeter {
  /** Events durably appended. */
  eventsIn(count: number): void;
  /** Records turned into `meteorzx.intake.error` events or refused (unparseable, over a limit). */
  invalid(count: number): void;
  /** Records lost before the buffer (UDP while full, oversize datagram, refused connection). */
  dropped(reason: string, count?: number): void;
  /** I/O failures (a file unreadable, a socket error). */
  error(kind: string): void;
  /**
   * One waiter of the intake starts (true) or stops (false) waiting for buffer space: each true is paired
   * with one false. The gauge is 1 while any waits: ports, connections and publishes of one intake share
   * its series, and one that resumed must not show 0 while another still waits.
   */
  blocked(on: boolean): void;
  /** Times one append (records latency and batch size when metrics are on). */
  timeAppend<T extends { length: number }>(events: number, append: () => Promise<T>): Promise<T>;
}

interface ExtraMetrics {
  dropped: Counter<'intake' | 'reason'>;
  errors: Counter<'intake' | 'kind'>;
  blocked: Gauge<'intake'>;
  /** Per intake: its waiters now (IntakeMeter.blocked). */
  waiting: Map<string, number>;
}

const extraMetrics = perRegistry(
  (registers): ExtraMetrics => ({
    dropped: new Counter({
      name: 'meteorzx_agent_intake_dropped_total',
      help: 'Records an intake lost before the buffer, by reason (e.g. UDP syslog while the buffer is full)',
      labelNames: ['intake', 'reason'],
      registers,
    }),
    errors: new Counter({
      name: 'meteorzx_agent_intake_errors_total',
      help: 'I/O errors in an intake, by kind',
      labelNames: ['intake', 'kind'],
      registers,
    }),
    blocked: new Gauge({
      name: 'meteorzx_agent_intake_blocked',
      help: '1 while the intake has stopped reading because the buffer is full (backpressure)',
      labelNames: ['intake'],
      registers,
    }),
    waiting: new Map(),
  }),
);

/**
 * A meter labelled `intake`; without metrics every call is a no-op. Its
 * series exist from the start at 0 (events in, invalid, blocked, and errors
 * of each kind in `errorKinds`), so a scrape shows every configured intake
 * before anything happens and `rate()` sees the first increment.
 */
export function createIntakeMeter(metrics: AgentMetrics | undefined, intake: string, errorKinds: readonly string[] = []): IntakeMeter {
  if (metrics === undefined) {
    return {
      eventsIn: () => undefined,
      invalid: () => undefined,
      dropped: () => undefined,
      error: () => undefined,
      blocked: () => undefined,
      timeAppend: (_events, append) => append(),
    };
  }
  const extra = extraMetrics(metrics.registry);
  extra.blocked.set({ intake }, (extra.waiting.get(intake) ?? 0) > 0 ? 1 : 0);
  metrics.eventsIn.inc({ intake }, 0);
  metrics.eventsInvalid.inc({ intake }, 0);
  for (const kind of errorKinds) extra.errors.inc({ intake, kind }, 0);
  return {
    eventsIn: (count) => metrics.eventsIn.inc({ intake }, count),
    invalid: (count) => metrics.eventsInvalid.inc({ intake }, count),
    dropped: (reason, count = 1) => extra.dropped.inc({ intake, reason }, count),
    error: (kind) => extra.errors.inc({ intake, kind }),
    blocked: (on) => {
      const waiting = Math.max(0, (extra.waiting.get(intake) ?? 0) + (on ? 1 : -1));
      if (waiting === 0) extra.waiting.delete(intake);
      else extra.waiting.set(intake, waiting);
      extra.blocked.set({ intake }, waiting > 0 ? 1 : 0);
    },
    timeAppend: (events, append) => metrics.timeAppend(events, append),
  };
}

/**
 * Drops the backpressure series of an intake that a reload removed: a stale
 * `blocked 1` would page someone about an intake that no longer runs. The
 * counters stay (Prometheus expects counters not to vanish and reappear).
 */
export function releaseIntakeMeter(metrics: AgentMetrics | undefined, intake: string): void {
  if (metrics === undefined) return;
  const extra = extraMetrics.existing(metrics.registry);
  extra?.waiting.delete(intake);
  extra?.blocked.remove({ intake });
}
