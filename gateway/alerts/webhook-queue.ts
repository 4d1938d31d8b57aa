import type { Logger } from 'pino';
import { Agent, request, type Dispatcher } from 'undici';
import type { TlsClientPem } from '../../common/tls-server.js';
import { tlsCertificateError } from '../../common/tls-trust.js';
import { basicAuthOf, redactUrl } from '../../common/url-credentials.js';
import type { Alert } from './alert.js';

/** Why alerts were not delivered to the webhook (the `reason` label of `alerts_dropped_total`). */
export type DropReason = 'queue-full' | 'post-failed' | 'shutdown';

/** Sends one batch; rejects when the receiver did not take it. */
export type PostBatch = (url: string, body: string, timeoutMs: number) => Promise<void>;

export interface WebhookQueueOptions {
  url: string;
  logger: Pick<Logger, 'warn'>;
  /** Alerts waiting for a POST at most; more are dropped and counted (default 1000). */
  maxQueued?: number;
  /** Alerts in one POST at most (default 100). */
  maxBatch?: number;
  /** ms an alert waits for others to share its POST (default 1000). */
  flushMs?: number;
  /** ms one POST may take, answer included (default 10 000). */
  timeoutMs?: number;
  /** Called with every drop; the sink counts them in /metrics. */
  onDropped?: (reason: DropReason, n: number) => void;
  /** `alerts.webhookTls`, read: a private CA for an https receiver, and a client certificate with its key. */
  tls?: TlsClientPem | undefined;
  /** Injectable for tests; default: an undici POST of JSON, any 2xx answer is taken. */
  post?: PostBatch;
  clock?: () => number;
}

const LOG_EVERY_MS = 60_000;

/**
 * The webhook side of the alert sink: alerts are queued and POSTed as one
 * JSON array per batch, one POST at a time. Both are bounded — a rule that
 * alerts on every event at thousands a second against a slow or dead
 * receiver costs at most `maxQueued` alerts of memory and one connection;
 * what does not fit is dropped, counted, and logged at most once a minute.
 * A failed POST is not retried: by the time a dead receiver is back, the
 * queue holds newer alerts, and the log and /metrics kept every one.
 */
export class WebhookQueue {
  private queue: Alert[] = [];
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly maxQueued: number;
  private readonly maxBatch: number;
  private readonly flushMs: number;
  private readonly timeoutMs: number;
  private readonly post: PostBatch;
  /** The connections of a webhook with its own TLS trust (alerts.webhookTls); the others use undici's global pool. */
  private readonly tlsAgent: Agent | undefined;
  private readonly clock: () => number;
  private unlogged = new Map<DropReason, number>();
  private loggedAt = -Infinity;
  private lastError = '';

  constructor(private readonly options: WebhookQueueOptions) {
    this.maxQueued = options.maxQueued ?? 1000;
    this.maxBatch = options.maxBatch ?? 100;
    this.flushMs = options.flushMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    const tlsAgent = options.post === undefined && options.tls !== undefined ? new Agent({ connect: options.tls }) : undefined;
    this.tlsAgent = tlsAgent;
    this.post = options.post ?? (tlsAgent === undefined ? postJson : (url, body, timeoutMs) => postJsonWith(url, body, timeoutMs, tlsAgent));
    this.clock = options.clock ?? Date.now;
  }

  /** Alerts waiting for a POST (not counting the one in flight). */
  get queued(): number {
    return this.queue.length;
  }

  /** Whether a POST is under way. */
  get posting(): boolean {
    return this.inFlight !== undefined;
  }

  push(alert: Alert): void {
    if (this.closed || this.queue.length >= this.maxQueued) {
      this.dropped(this.closed ? 'shutdown' : 'queue-full', 1);
      return;
    }
    this.queue.push(alert);
    if (this.queue.length >= this.maxBatch) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.flushMs).unref();
  }

  /**
   * Posts what is queued, in batches, for at most one POST timeout more, then
   * drops (and counts) the rest: a dead receiver must not hold a shutdown for
   * `maxQueued / maxBatch` timeouts. Idempotent.
   */
  async close(): Promise<void> {
    this.closed = true;
    const deadline = this.clock() + this.timeoutMs;
    while (this.inFlight !== undefined || this.queue.length > 0) {
      if (this.inFlight === undefined) this.flush();
      const current = this.inFlight;
      if (current === undefined) break;
      const left = deadline - this.clock();
      if (left <= 0) break;
      let wait: NodeJS.Timeout | undefined;
      await Promise.race([current, new Promise<void>((resolve) => (wait = setTimeout(resolve, left)))]);
      clearTimeout(wait);
      if (this.inFlight === current) break;
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length > 0) this.dropped('shutdown', this.queue.length);
    this.queue = [];
    this.logDrops(true);
    await this.tlsAgent?.destroy();
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.inFlight !== undefined || this.queue.length === 0) return;
    const batch = this.queue.length <= this.maxBatch ? this.queue : this.queue.slice(0, this.maxBatch);
    this.queue = batch === this.queue ? [] : this.queue.slice(this.maxBatch);
    const sent = this.post(this.options.url, JSON.stringify(batch), this.timeoutMs)
      .catch((err: unknown) => {
        const tls = tlsCertificateError(err);
        if (tls !== undefined) this.lastError = tls.untrusted ? `${tls.text}; trust its CA with alerts.webhookTls.ca` : tls.text;
        else this.lastError = err instanceof Error ? err.message : String(err);
        this.dropped('post-failed', batch.length);
      })
      .finally(() => {
        if (this.inFlight === sent) this.inFlight = undefined;
        if (this.closed) return;
        // A full batch goes at once; a partial one waits to be joined, as a new one would.
        if (this.queue.length >= this.maxBatch) this.flush();
        else if (this.queue.length > 0) this.timer ??= setTimeout(() => this.flush(), this.flushMs).unref();
      });
    this.inFlight = sent;
  }

  private dropped(reason: DropReason, n: number): void {
    this.options.onDropped?.(reason, n);
    this.unlogged.set(reason, (this.unlogged.get(reason) ?? 0) + n);
    this.logDrops(false);
  }

  /** One warning a minute at most, with the drops since the last one by reason. */
  private logDrops(force: boolean): void {
    if (this.unlogged.size === 0) return;
    const now = this.clock();
    if (!force && now - this.loggedAt < LOG_EVERY_MS) return;
    this.loggedAt = now;
    const dropped = Object.fromEntries(this.unlogged);
    this.unlogged = new Map();
    this.options.logger.warn(
      { webhook: redactUrl(this.options.url), dropped, ...(dropped['post-failed'] === undefined ? {} : { lastError: this.lastError }) },
      'alerts not delivered to the webhook (counted in meteorzx_gateway_alerts_dropped_total)',
    );
  }
}

/**
 * The URL to send to and its headers. A user and password in the URL
 * (`https://bot:secret@hooks.example/alerts`) are sent as HTTP Basic auth.
 */
function target(url: string): { url: string; headers: Record<string, string> } {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const parsed = new URL(url);
  const authorization = basicAuthOf(parsed);
  if (authorization === undefined) return { url, headers };
  headers.authorization = authorization;
  parsed.username = '';
  parsed.password = '';
  return { url: parsed.toString(), headers };
}

/** POSTs a JSON body; a non-2xx answer is a failure (a receiver that refused the batch). */
export const postJson: PostBatch = (url, body, timeoutMs) => postJsonWith(url, body, timeoutMs, undefined);

/** postJson through `dispatcher` (undici's global one when undefined). */
async function postJsonWith(url: string, body: string, timeoutMs: number, dispatcher: Dispatcher | undefined): Promise<void> {
  const to = target(url);
  const res = await request(to.url, {
    ...(dispatcher === undefined ? {} : { dispatcher }),
    method: 'POST',
    headers: to.headers,
    body,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    // The whole exchange, not only each wait: a receiver trickling its answer must not hold the one slot.
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.body.dump();
  if (res.statusCode < 200 || res.statusCode > 299) throw new Error(`the webhook answered ${res.statusCode}`);
}
