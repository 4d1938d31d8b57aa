import type { Logger } from 'pino';
import type { GatewayMetrics } from '../metrics.js';
import { alertLabel, type Alert } from './alert.js';
import type { TlsClientPem } from '../../common/tls-server.js';
import { WebhookQueue, type WebhookQueueOptions } from './webhook-queue.js';

export interface AlertSinkOptions {
  /** `alerts.webhook`: alerts are also POSTed here, in batches (webhook-queue.ts). */
  webhook?: string | undefined;
  /** `alerts.webhookTls`, read: the webhook's private CA and client certificate. */
  webhookTls?: TlsClientPem | undefined;
  metrics?: GatewayMetrics | undefined;
  logger: Pick<Logger, 'warn'>;
  /** Bounds and timing of the webhook queue (tests); the URL comes from `webhook`. */
  queue?: Omit<WebhookQueueOptions, 'url' | 'logger' | 'onDropped'>;
  /** Log lines per rule (or kind) in one window, and the window; default 10 per 10 s (tests). */
  log?: { burst: number; windowMs: number };
}

/** Per rule (or kind): alerts logged in the current window, and those left out of the log. */
interface LogWindow {
  logged: number;
  suppressed: number;
}

const LOG_BOUNDS = { burst: 10, windowMs: 10_000 };

/**
 * The gateway's one alert sink (DESIGN §1: alerts on gaps and volume drops;
 * docs/config.md `alerts`): every alert — from pipeline rules, chain checks,
 * pulls, backfill and the volume watch — is a warning in the log and a count
 * in `meteorzx_gateway_alerts_total{rule=<rule name or kind>}`, and goes to
 * `alerts.webhook` when one is set; the log is bounded per rule (`log`).
 * Raising never blocks or throws: the webhook is best effort, and a dead
 * receiver must stall neither a commit nor the repair of the very losses it
 * should hear about.
 */
export class AlertSink {
  private readonly webhook: WebhookQueue | undefined;
  private readonly logWindows = new Map<string, LogWindow>();
  private windowTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: AlertSinkOptions) {
    const { webhook, metrics, logger } = options;
    this.webhook =
      webhook === undefined
        ? undefined
        : new WebhookQueue({
            ...options.queue,
            url: webhook,
            tls: options.webhookTls,
            logger,
            ...(metrics === undefined ? {} : { onDropped: (reason, n) => metrics.alertsDropped.inc({ reason }, n) }),
          });
  }

  raise(alert: Alert): void {
    const label = alertLabel(alert);
    this.log(label, alert);
    this.options.metrics?.alerts.inc({ rule: label });
    this.webhook?.push(alert);
  }

  /**
   * A rule that matches every event must not write a log line per event
   * (Vector rate-limits its own logs the same way): each rule or kind logs
   * its first `burst` alerts of a window, and at the window's end one line
   * says how many more there were. Metrics and the webhook still get all.
   */
  private log(label: string, alert: Alert): void {
    const { burst, windowMs } = this.options.log ?? LOG_BOUNDS;
    let window = this.logWindows.get(label);
    if (window === undefined) {
      window = { logged: 0, suppressed: 0 };
      this.logWindows.set(label, window);
      this.windowTimer ??= setTimeout(() => this.endLogWindow(windowMs), windowMs).unref();
    }
    if (window.logged < burst) {
      window.logged += 1;
      this.options.logger.warn({ alert: alert.kind, ...alert }, `alert: ${alert.detail}`);
    } else {
      window.suppressed += 1;
    }
  }

  private endLogWindow(windowMs: number): void {
    for (const [rule, { suppressed }] of this.logWindows) {
      if (suppressed === 0) continue;
      this.options.logger.warn(
        { rule, suppressed, windowMs },
        `alert: ${suppressed} more "${rule}" alerts in ${windowMs / 1000} s, not logged one by one (counted in meteorzx_gateway_alerts_total, sent to the webhook)`,
      );
    }
    this.logWindows.clear();
    clearTimeout(this.windowTimer);
    this.windowTimer = undefined;
  }

  /** Posts what the webhook queue still holds (bounded by one POST timeout); alerts raised after are dropped. */
  async close(): Promise<void> {
    if (this.windowTimer !== undefined) this.endLogWindow((this.options.log ?? LOG_BOUNDS).windowMs);
    await this.webhook?.close();
  }
}

/** Anything alerts can be raised on: the sink, or a test's recorder. */
export type RaiseAlert = Pick<AlertSink, 'raise'>;
