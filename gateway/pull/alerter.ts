import type { Logger } from 'pino';
import { request } from 'undici';
import type { GatewayMetrics } from '../metrics.js';

/** An operator-facing alert from the pull side (DESIGN §1: alerts on gaps; issue 5: failed pulls). */
export interface PullAlert {
  kind: 'pull-failed' | 'gap-lost';
  detail: string;
  url?: string;
  agent?: string;
  epoch?: string;
  from?: number;
  to?: number;
  at: string;
}

export interface AlerterOptions {
  webhook?: string | undefined;
  metrics?: GatewayMetrics | undefined;
  logger: Logger;
  timeoutMs?: number;
}

/**
 * Raises an alert three ways: a warning in the log and the `alerts_total`
 * metric always, and a JSON POST to `alerts.webhook` when configured. The
 * webhook is best effort and never blocks a pull: a dead receiver must not
 * stall the repair of the very losses it should hear about.
 */
export class Alerter {
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly options: AlerterOptions) {}

  raise(alert: PullAlert): void {
    const { logger, metrics, webhook } = this.options;
    logger.warn({ alert: alert.kind, ...alert }, `alert: ${alert.detail}`);
    metrics?.alerts.inc({ rule: alert.kind });
    if (webhook === undefined) return;
    const timeout = this.options.timeoutMs ?? 10_000;
    const sent = request(webhook, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(alert),
      headersTimeout: timeout,
      bodyTimeout: timeout,
    })
      .then((res) => res.body.dump())
      .catch((err: unknown) => logger.warn({ err: (err as Error).message, webhook }, 'alert webhook failed'))
      .finally(() => this.pending.delete(sent));
    this.pending.add(sent);
  }

  /** Waits for webhook posts in flight (close). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }
}
