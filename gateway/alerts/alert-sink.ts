import type { Logger } from 'pino';
import type { GatewayMetrics } from '../metrics.js';
import { alertLabel, type Alert } from './alert.js';
import { WebhookQueue, type WebhookQueueOptions } from './webhook-queue.js';

export interface AlertSinkOptions {
  /** `alerts.webhook`: alerts are also POSTed here, in batches (webhook-queue.ts). */
  webhook?: string | undefined;
  metrics?: GatewayMetrics | undefined;
  logger: Pick<Logger, 'warn'>;
  /** Bounds and timing of the webhook queue (tests); the URL comes from `webhook`. */
  queue?: Omit<WebhookQueueOptions, 'url' | 'logger' | 'onDropped'>;
}

/**
 * The gateway's one alert sink (DESIGN §1: alerts on gaps and volume drops;
 * docs/config.md `alerts`): every alert — from pipeline rules, chain checks,
 * pulls, backfill and the volume watch — is a warning in the log and a count
 * in `meteorzx_gateway_alerts_total{rule=<rule name or kind>}`, and goes to
 * `alerts.webhook` when one is set. Raising never blocks or throws: the
 * webhook is best effort, and a dead receiver must stall neither a commit
 * nor the repair of the very losses it should hear about.
 */
export class AlertSink {
  private readonly webhook: WebhookQueue | undefined;

  constructor(private readonly options: AlertSinkOptions) {
    const { webhook, metrics, logger } = options;
    this.webhook =
      webhook === undefined
        ? undefined
        : new WebhookQueue({
            ...options.queue,
            url: webhook,
            logger,
            ...(metrics === undefined ? {} : { onDropped: (reason, n) => metrics.alertsDropped.inc({ reason }, n) }),
          });
  }

  raise(alert: Alert): void {
    this.options.logger.warn({ alert: alert.kind, ...alert }, `alert: ${alert.detail}`);
    this.options.metrics?.alerts.inc({ rule: alertLabel(alert) });
    this.webhook?.push(alert);
  }

  /** Posts what the webhook queue still holds (bounded by one POST timeout); alerts raised after are dropped. */
  async close(): Promise<void> {
    await this.webhook?.close();
  }
}

/** Anything alerts can be raised on: the sink, or a test's recorder. */
export type RaiseAlert = Pick<AlertSink, 'raise'>;
