import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { promisify } from 'node:util';
import { gzip as gzipCb, constants as zlibConstants } from 'node:zlib';
import type { ChainedEvent, IngestResponse } from '../../protocols/index.js';
import { NDJSON } from '../../protocols/index.js';
import { ndjsonOf } from '../buffer/event-line.js';
import { parseRetryAfter } from './retry-after.js';
import type { PushTransport, SendOutcome } from './types.js';

const gzip = promisify(gzipCb);

export interface HttpTransportOptions {
  /** Gateway ingest URL, e.g. http://gw:7400/v1/events. */
  url: string;
  token?: string;
  /** Concurrent POSTs (= pooled keep-alive connections). */
  maxInFlight?: number;
  /** Bodies larger than this are gzipped, bytes. */
  gzipAboveBytes?: number;
  /** Longest wait for the gateway's answer, ms (it answers after its durable write). */
  timeoutMs?: number;
  /** PEM of a private CA for https. */
  ca?: string | Buffer;
}

/** Status codes after which the same bytes may succeed later. */
function isRetryable(status: number): boolean {
  return status === 408 || status === 429 || status === 401 || status === 403 || status >= 500;
}

/**
 * Pushes batches as NDJSON POSTs over keep-alive connections (node:http's
 * own Agent: the intake has loaded node:http already, while undici would add
 * ≈15 MB of RSS to an agent budgeted at 60). A 2xx is an ack even when the
 * answer lists rejected events: the gateway has durably recorded those as
 * rejected (DESIGN §3.2), so resending would only repeat the rejection.
 * 401/403 are retried (with backoff) rather than dropped: a wrong token is an
 * operator's mistake to fix, not a reason to lose data.
 */
export class HttpTransport implements PushTransport {
  readonly name = 'http';
  readonly maxInFlight: number;
  private readonly url: URL;
  private readonly agent: HttpAgent;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private closed: Promise<void> | undefined;

  constructor(private readonly options: HttpTransportOptions) {
    this.url = new URL(options.url);
    this.maxInFlight = options.maxInFlight ?? 4;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    const agentOptions = { keepAlive: true, maxSockets: this.maxInFlight, maxFreeSockets: this.maxInFlight, scheduling: 'lifo' as const };
    this.agent =
      this.url.protocol === 'https:'
        ? new HttpsAgent({ ...agentOptions, ...(options.ca === undefined ? {} : { ca: options.ca }) })
        : new HttpAgent(agentOptions);
    this.headers = { 'content-type': NDJSON };
    if (options.token !== undefined) this.headers.authorization = `Bearer ${options.token}`;
  }

  async start(): Promise<void> {}

  async send(events: readonly ChainedEvent[]): Promise<SendOutcome> {
    if (this.closed !== undefined) return { kind: 'retry', error: 'transport closed' };
    let body: Buffer = Buffer.from(ndjsonOf(events));
    const headers = { ...this.headers };
    if (body.byteLength > (this.options.gzipAboveBytes ?? 4096)) {
      // Fastest level: the link is rarely the bottleneck, the CPU on both ends is.
      body = await gzip(body, { level: zlibConstants.Z_BEST_SPEED });
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = String(body.byteLength);
    try {
      const { status, text, retryAfter } = await this.post(body, headers);
      if (status >= 200 && status < 300) {
        return { kind: 'acked', rejected: parseRejected(text) };
      }
      const error = `gateway answered ${status}: ${summarize(text)}`;
      if (!isRetryable(status)) return { kind: 'permanent', error };
      const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(retryAfter) : undefined;
      return retryAfterMs === undefined ? { kind: 'retry', error } : { kind: 'retry', error, retryAfterMs };
    } catch (err) {
      return { kind: 'retry', error: `${this.options.url}: ${describe(err)}` };
    }
  }

  close(): Promise<void> {
    this.closed ??= Promise.resolve().then(() => this.agent.destroy());
    return this.closed;
  }

  private post(body: Buffer, headers: Record<string, string>): Promise<{ status: number; text: string; retryAfter: string | undefined }> {
    return new Promise((resolve, reject) => {
      const request = this.url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = request(
        this.url,
        { method: 'POST', agent: this.agent, headers, timeout: this.timeoutMs },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.once('error', reject);
          res.once('end', () => {
            const retryAfter = res.headers['retry-after'];
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), retryAfter });
          });
        },
      );
      // `timeout` is socket inactivity: the gateway answers only after its durable write, so this bounds that wait.
      req.once('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      req.once('error', reject);
      req.end(body);
    });
  }
}

function parseRejected(text: string): IngestResponse['rejected'] {
  try {
    const parsed = JSON.parse(text) as Partial<IngestResponse>;
    return Array.isArray(parsed.rejected) ? parsed.rejected : [];
  } catch {
    return [];
  }
}

function summarize(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: unknown };
    if (typeof parsed.error === 'string') return parsed.error.slice(0, 300);
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.slice(0, 300) || '(empty body)';
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e.cause?.code ?? e.code;
  const message = e.cause?.message ?? e.message ?? String(err);
  return code !== undefined && !message.includes(code) ? `${code} ${message}` : message;
}
