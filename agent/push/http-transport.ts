import { promisify } from 'node:util';
import { gzip as gzipCb, constants as zlibConstants } from 'node:zlib';
import type { Dispatcher } from 'undici';
import type { IngestResponse } from '../../protocols/index.js';
import type { StoredLine } from '../buffer/types.js';
import { NDJSON } from '../../protocols/index.js';
import { ndjsonOf } from '../buffer/event-line.js';
import { basicAuthOf, redactUrl } from '../../common/url-credentials.js';
import { parseRetryAfter } from '../../common/retry-after.js';
import { Pool, poolRequest } from './undici-pool.js';
import type { PushTransport, SendOutcome } from './types.js';

const gzip = promisify(gzipCb);

/**
 * Most bytes of an answer read, per request. The gateway's answer is small (its rejected list cuts each
 * reason short); anything else answering at the push URL is not let grow the agent's heap by what it sends.
 */
export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

export interface HttpTransportOptions {
  /** Gateway ingest URL, e.g. http://gw:7400/v1/events. */
  url: string;
  token?: string;
  /** Concurrent POSTs (= pooled keep-alive connections). */
  maxInFlight?: number;
  /** Bodies larger than this are gzipped, bytes. */
  gzipAboveBytes?: number;
  /** Longest wait for the gateway's answer headers, ms (it answers after its durable write). */
  timeoutMs?: number;
  /** PEM of a private CA for https. */
  ca?: string | Buffer;
  /** PEM client certificate and key, for a gateway that asks for one (mutual TLS). */
  cert?: string | Buffer;
  key?: string | Buffer;
}

/** Status codes after which the same bytes may succeed later. */
function isRetryable(status: number): boolean {
  return status === 408 || status === 429 || status === 401 || status === 403 || status >= 500;
}

/**
 * Pushes batches as NDJSON POSTs over an undici keep-alive pool (undici is
 * the project's HTTP client; only its Pool is loaded: undici-pool.ts). A 2xx is an
 * ack even when the answer lists rejected events: the gateway has durably
 * recorded those as rejected (DESIGN §3.2), so resending would only repeat
 * the rejection. 401/403 are retried (with backoff) rather than dropped: a
 * wrong token is an operator's mistake to fix, not a reason to lose data.
 */
export class HttpTransport implements PushTransport {
  readonly name = 'http';
  readonly maxInFlight: number;
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private closed: Promise<void> | undefined;
  /** The URL in error messages, without its password. */
  private readonly shownUrl: string;
  /** The receiver answered 415 to a gzipped body: bodies go uncompressed from then on. */
  private gzipRefused = false;

  constructor(private readonly options: HttpTransportOptions) {
    const url = new URL(options.url);
    this.maxInFlight = options.maxInFlight ?? 4;
    this.path = `${url.pathname}${url.search}`;
    const timeout = options.timeoutMs ?? 30_000;
    this.pool = new Pool(url.origin, {
      connections: this.maxInFlight,
      keepAliveTimeout: 30_000,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      connect: {
        timeout: Math.min(timeout, 10_000),
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        ...(options.cert === undefined || options.key === undefined ? {} : { cert: options.cert, key: options.key }),
      },
    });
    this.headers = { 'content-type': NDJSON };
    // Credentials in the URL (a proxy asking for Basic auth) go as a header: undici's Pool takes the origin only.
    const authorization = options.token === undefined ? basicAuthOf(url) : `Bearer ${options.token}`;
    if (authorization !== undefined) this.headers.authorization = authorization;
    this.shownUrl = redactUrl(options.url);
  }

  async start(): Promise<void> {}

  async send(events: readonly StoredLine[]): Promise<SendOutcome> {
    const outcome = await this.post(events);
    // 415 to a gzipped body: the receiver (a proxy, another HTTP input) takes no Content-Encoding, and the
    // same events uncompressed may well go. A permanent refusal would skip each of them with a gap event.
    if (outcome.gzipped && outcome.status === 415) {
      this.gzipRefused = true;
      return (await this.post(events)).outcome;
    }
    return outcome.outcome;
  }

  private async post(events: readonly StoredLine[]): Promise<{ outcome: SendOutcome; status?: number; gzipped: boolean }> {
    if (this.closed !== undefined) return { outcome: { kind: 'retry', error: 'transport closed' }, gzipped: false };
    // The lines the buffer hashed and stored: no second serialisation.
    let body: Buffer = ndjsonOf(events);
    const headers = { ...this.headers };
    const gzipped = !this.gzipRefused && body.byteLength > (this.options.gzipAboveBytes ?? 4096);
    if (gzipped) {
      // Fastest level: the link is rarely the bottleneck, the CPU on both ends is.
      body = await gzip(body, { level: zlibConstants.Z_BEST_SPEED });
      headers['content-encoding'] = 'gzip';
    }
    let answered = false;
    try {
      const res = await poolRequest(this.pool, { method: 'POST', path: this.path, headers, body });
      answered = true;
      // The status decides the outcome; the answer only adds detail, so it is read within bounds.
      const text = await readAnswer(res.body, MAX_ANSWER_BYTES, this.options.timeoutMs ?? 30_000);
      const status = res.statusCode;
      if (status >= 200 && status < 300) {
        return { outcome: { kind: 'acked', rejected: parseRejected(text) }, status, gzipped };
      }
      const error = `gateway answered ${status}: ${summarize(text)}`;
      if (!isRetryable(status)) return { outcome: status === 413 ? { kind: 'permanent', error, tooLarge: true } : { kind: 'permanent', error }, status, gzipped };
      const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(res.headers['retry-after']) : undefined;
      return { outcome: retryAfterMs === undefined ? { kind: 'retry', error } : { kind: 'retry', error, retryAfterMs }, status, gzipped };
    } catch (err) {
      const error = `${this.shownUrl}: ${describe(err)}`;
      return { outcome: !answered && wentUnanswered(err) ? { kind: 'retry', error, unanswered: true } : { kind: 'retry', error }, gzipped };
    }
  }

  /**
   * Abandons requests still in flight: the sender has given them its
   * closeTimeoutMs, and the buffer resends them after a restart. A graceful
   * `pool.close()` would wait for their answers, up to `timeoutMs`, from a
   * gateway that may never give one.
   */
  close(): Promise<void> {
    this.closed ??= this.pool.destroy().catch(() => undefined);
    return this.closed;
  }
}

/**
 * The answer's first `maxBytes`, as text, read for at most `timeoutMs`; then the rest is dropped with the
 * connection. undici's bodyTimeout is a limit between two chunks, so an answer sent a byte at a time, or
 * one that never ends, would otherwise hold the send (and a slot of maxInFlight) for ever, and `text()`
 * would hold all of it in memory.
 */
async function readAnswer(body: Dispatcher.ResponseData['body'], maxBytes: number, timeoutMs: number): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    body.destroy();
  }, timeoutMs);
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      chunks.push(chunk.subarray(0, maxBytes - bytes));
      bytes += chunk.byteLength;
      if (bytes >= maxBytes) break;
    }
  } catch (err) {
    // Cut by the timer: what came is the answer. A connection that failed on its own is a failure, as before.
    if (!late) throw err;
  } finally {
    clearTimeout(timer);
    if (!body.destroyed) body.destroy();
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * True for a request that was under way and got no answer: the connection closed under it, or the
 * answer's headers did not come within timeoutMs (undici counts the upload in that time, so a body a
 * slow link cannot carry in time ends here too). Not for a connection that could not be made.
 */
function wentUnanswered(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code;
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE';
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
