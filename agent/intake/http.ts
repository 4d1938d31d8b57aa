import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createGunzip, createInflate } from 'node:zlib';
import type { Logger } from 'pino';
import { capHttpConnections } from '../../common/http-connection-cap.js';
import { answerAfterHalfClose } from '../../common/http-half-close.js';
import { hostPort } from '../../common/host-port.js';
import type { TlsServerOptions } from '../../common/tls-server.js';
import {
  bodyFormat,
  decodeBatch,
  formatIssues,
  isMeteorError,
  ProtocolErrors,
  unsupportedContentType,
  validateEvent,
  type AuditEvent,
  type BodyFormat,
  type IngestResponse,
  type Limits,
  type RejectedItem,
} from '../../protocols/index.js';
import type { AgentBuffer } from '../buffer/types.js';
import { AgentErrors } from '../errors.js';
import { bearerMatches, closeServer, isLoopback, listen, sendError, sendJson, trackConnections, type ListenAddress } from '../http-helpers.js';
import { createIntakeMeter, type IntakeMeter } from './intake-meter.js';
import type { AgentMetrics } from '../metrics.js';
import type { Intake } from './types.js';
import { appendFitting } from './append-fitting.js';

export interface HttpIntakeOptions {
  listen: ListenAddress;
  /** Event, depth, batch and body limits; `maxBodyBytes` applies after decompression (and to the raw body). */
  limits: Limits;
  buffer: AgentBuffer;
  metrics?: AgentMetrics;
  logger?: Logger;
  /** Requests being read, validated or appended at once; more get 503. */
  maxConcurrent?: number;
  /** Body bytes held in memory across all requests, raw and decompressed; past it new chunks get 503. */
  maxPendingBytes?: number;
  /** Retry-After on a 503, seconds. */
  retryAfterSeconds?: number;
  /** Longest close() waits for requests in progress, ms. */
  closeTimeoutMs?: number;
  /** Bearer token every request must carry; required on a non-loopback bind. */
  token?: string;
  /** Allow a non-loopback bind without a token (`--insecure`). */
  insecure?: boolean;
  /** Serve HTTPS instead of HTTP (common/tls-server.ts). */
  tls?: TlsServerOptions;
  /** TCP connections at once (`intake.http.maxConnections`); more are refused and counted. Default 256. */
  maxConnections?: number;
  /** Most time a connection may take to send a request's headers, from its opening or the first byte of the request, ms (`intake.http.headersTimeout`). */
  headersTimeoutMs?: number;
}

/** Default of `intake.http.headersTimeout`, ms: a producer sends its headers at once; a connection that sends none is a flood's. */
export const HEADERS_TIMEOUT_MS = 10_000;

const ENCODINGS: ReadonlySet<string> = new Set(['identity', 'gzip', 'x-gzip', 'deflate']);

/** How long an idle keep-alive connection to the intake is kept, ms (the `Keep-Alive: timeout=` it announces). */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** Most time a client may take to send a whole request, headers and body, ms. */
const REQUEST_TIMEOUT_MS = 60_000;

/**
 * `POST /v1/events` on the agent (DESIGN §5): the same body formats, limits
 * and per-event errors as the gateway's ingest, but the 2xx means "durable in
 * this agent's buffer" — it is sent only after `buffer.append` resolved, so a
 * producer that got it may forget the events (§3.1). All valid events of one
 * request go to the buffer in one append, which shares a group commit.
 *
 * Memory is bounded twice: by the number of requests in progress and by the
 * body bytes they hold, raw and decompressed (a 14 KB gzip body can be an
 * 8 MiB one), so a burst of large bodies meets a 503, not an out-of-memory
 * kill.
 */
export class HttpIntake implements Intake {
  readonly name = 'http';
  private readonly server: Server;
  private bound: ListenAddress | undefined;
  private active = 0;
  private pendingBytes = 0;
  private closing = false;
  private closed: Promise<void> | undefined;
  /** Requests whose body is still coming: a stop answers them 503 at once instead of waiting for their bodies. */
  private readonly reading = new Set<(err: unknown) => void>();
  /** Requests whose body has arrived, each until its answer is sent: a stop answers them all, however long their commit takes. */
  private readonly answering = new Set<Promise<void>>();
  private readonly maxConcurrent: number;
  private readonly maxPendingBytes: number;
  private readonly retryAfter: string;
  private readonly meter: IntakeMeter;
  /** Answering 503/507 for a full buffer, until it has space again (meteorzx_agent_intake_blocked). */
  private full = false;

  constructor(private readonly options: HttpIntakeOptions) {
    this.maxConcurrent = options.maxConcurrent ?? 64;
    this.maxPendingBytes = options.maxPendingBytes ?? 64 * 1024 * 1024;
    this.retryAfter = String(options.retryAfterSeconds ?? 1);
    // A slow or stalled client must not hold a request slot for ever.
    // An idle keep-alive connection lives past the producers' own idle timeouts (Fluent Bit's 30 s,
    // common pools' 60 s): closed first by us at Node's 5 s, a producer's next request raced the FIN and
    // failed with a reset (Fluent Bit then retries the chunk, and drops it past Retry_Limit). The connection
    // cap bounds what idle ones cost, and a stop drops them at once (trackConnections).
    // Node checks both timeouts every connectionsCheckingInterval (30 s by default): a connection that never sent a
    // request held its slot for up to 60 s at the 30 s headersTimeout. Checking every second costs one pass over
    // the connections (≤ maxConnections).
    const headersTimeout = Math.min(options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
    const timeouts = { requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout, keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS, connectionsCheckingInterval: 1000 };
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      void this.handle(req, res, false);
    };
    this.server = options.tls === undefined ? createServer(timeouts, handler) : createHttpsServer({ ...timeouts, ...options.tls }, handler);
    answerAfterHalfClose(this.server);
    trackConnections(this.server);
    this.meter = createIntakeMeter(options.metrics, this.name, options.token === undefined ? [] : ['auth']);
    const maxConnections = options.maxConnections ?? 256;
    // At the cap, a connection doing nothing (a kept-alive spare, else the one waiting longest for its request)
    // gives way, so the next producer's connection is not refused.
    const meter = this.meter;
    capHttpConnections(this.server, maxConnections, {
      configKey: 'intake.http.maxConnections',
      metric: 'meteorzx_agent_intake_dropped_total',
      logger: options.logger,
      refused: () => meter.dropped('connection-refused'),
    });
    // `Expect: 100-continue` (curl sends it for bodies over 1 MiB): the headers are judged before the body is
    // invited. Node's default answers 100 at once, so a body over the limit was sent in full to a server that
    // had answered 413 and closed — the client often saw a reset instead of the 413.
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      void this.handle(req, res, true);
    });
  }

  async start(): Promise<void> {
    const { listen: address, token, insecure } = this.options;
    // Anyone who reaches the intake writes into this agent's hash chain, as trusted as its own events.
    if (!isLoopback(address.host) && token === undefined && insecure !== true) {
      throw AgentErrors.METEORZX_INSECURE_BIND(
        `intake.http.listen ${address.host}:${address.port} is not a loopback address and intake.http.token is not set; set a token, bind 127.0.0.1, or pass --insecure`,
        { userError: true },
      );
    }
    this.bound = await listen(this.server, address, 'intake.http.listen');
  }

  /** The bound address (the real port when configured with port 0). */
  address(): ListenAddress {
    if (this.bound === undefined) throw new Error('HttpIntake.address() before start()');
    return this.bound;
  }

  describe(): Record<string, unknown> {
    return { intake: this.name, listen: this.bound === undefined ? undefined : hostPort(this.bound.host, this.bound.port) };
  }

  /**
   * Stops accepting; requests already appending finish and are answered, however long their commit
   * takes: past closeTimeoutMs their connections were dropped unanswered while the buffer's close went
   * on to commit their events, so a producer retried events that were stored, and those without an id
   * were stored twice. The stop waits for that commit anyway. A request whose body is still coming is
   * answered 503 at once: a stalled upload held the stop for the whole grace, then lost its connection
   * with no answer.
   */
  close(): Promise<void> {
    this.closing = true;
    for (const abort of this.reading) abort(AgentErrors.METEORZX_INTAKE_CLOSING('the agent is shutting down'));
    this.closed ??= closeServer(this.server, this.options.closeTimeoutMs ?? 10_000, () => Promise.all(this.answering));
    return this.closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> {
    let holding = 0;
    try {
      const path = (req.url ?? '/').split('?')[0];
      const token = this.options.token;
      if (token !== undefined && !bearerMatches(req.headers.authorization, token)) {
        // As the edge MQTT broker counts a refused login: a producer with a stale token shows in the metrics, not only in its own logs.
        this.meter.error('auth');
        // An unread body cannot be skipped on a keep-alive connection (a refused Expect: 100-continue leaves it unsent).
        sendError(res, AgentErrors.METEORZX_UNAUTHORIZED('missing or wrong bearer token'), { 'www-authenticate': 'Bearer', ...(req.complete ? {} : { connection: 'close' }) });
        return;
      }
      if (path !== '/v1/events') throw AgentErrors.METEORZX_NOT_FOUND(`no route ${req.method ?? ''} ${path ?? ''}`);
      if (req.method !== 'POST') {
        sendError(res, AgentErrors.METEORZX_METHOD_NOT_ALLOWED(`${req.method ?? ''} not allowed on /v1/events; use POST`), { allow: 'POST' });
        return;
      }
      if (this.closing) throw AgentErrors.METEORZX_INTAKE_CLOSING('the agent is shutting down');
      const format = bodyFormat(req.headers['content-type']);
      if (format === undefined) throw unsupportedContentType(req.headers['content-type']);
      const encoding = (req.headers['content-encoding'] ?? '').trim().toLowerCase() || 'identity';
      if (!ENCODINGS.has(encoding)) {
        throw ProtocolErrors.METEORZX_UNSUPPORTED_MEDIA_TYPE(`content encoding "${encoding}" is not taken; use gzip or none`);
      }
      const limit = this.options.limits.maxBodyBytes;
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > limit) throw tooLarge(declared, limit);
      if (this.active >= this.maxConcurrent) {
        throw AgentErrors.METEORZX_INTAKE_BUSY(`${this.active} requests in progress (the limit is ${this.maxConcurrent})`);
      }
      this.active += 1;
      try {
        // `alone`: past the budget too when this request is the only one holding anything, so that a body
        // always goes through once the others are done (it would be refused for ever otherwise).
        const hold = (n: number, alone = false) => {
          if (this.pendingBytes + n > this.maxPendingBytes && !(alone && this.pendingBytes === holding)) {
            throw AgentErrors.METEORZX_INTAKE_BUSY('too many request bytes held in memory; retry shortly');
          }
          this.pendingBytes += n;
          holding += n;
        };
        // Every check that needs no body has passed: now the client may send it.
        if (expectsContinue) res.writeContinue();
        const raw = await this.readBody(req, limit, hold);
        const answered = new Promise<void>((resolve) => res.once('close', resolve));
        this.answering.add(answered);
        void answered.then(() => this.answering.delete(answered));
        const body = encoding === 'identity' ? raw : await decompress(raw, encoding, limit, hold);
        // What parsing will build counts too: 8 MiB of `{},{},…` (valid events under maxEventBytes) is ≈ 180 MB of
        // objects, so bytes alone let 8 such bodies at once take the agent past 1.9 GB.
        hold(parsedBytes(body), true);
        const answer = await this.ingest(body, format);
        sendJson(res, 200, answer);
      } finally {
        this.active -= 1;
      }
    } catch (err) {
      this.answerError(req, res, err);
    } finally {
      this.pendingBytes -= holding;
    }
  }

  private async ingest(body: Uint8Array, format: BodyFormat): Promise<IngestResponse> {
    const { limits, buffer, metrics } = this.options;
    const items = decodeBatch(body, format, limits, { jsonSequence: true });
    let rejected: RejectedItem[] = [];
    const valid: AuditEvent[] = [];
    for (const item of items) {
      if (item.error !== undefined) {
        rejected.push({ index: item.index, error: item.error });
        continue;
      }
      const result = validateEvent(item.value, limits, item.bytes);
      if (result.ok) valid.push(result.event);
      else rejected.push({ index: item.index, error: formatIssues(result.errors) });
    }
    let accepted = valid.length;
    if (valid.length > 0) {
      // The answer waits for this: 2xx means durable (DESIGN §3.1).
      const append = (events: readonly AuditEvent[]) => (metrics ? metrics.timeAppend(events.length, () => buffer.append(events)) : buffer.append(events));
      const tooLarge = await appendFitting(valid, append).catch((err: unknown) => {
        if (isMeteorError(err) && (err.code === 'METEORZX_BUFFER_FULL' || err.code === 'METEORZX_BUFFER_REJECTED')) this.bufferFull();
        throw err;
      });
      if (tooLarge.length > 0) {
        // Rare: the valid events are the items not rejected so far, in order.
        const invalid = new Set(rejected.map((r) => r.index));
        const validAt = items.map((item) => item.index).filter((index) => !invalid.has(index));
        accepted -= tooLarge.length;
        rejected = [...rejected, ...tooLarge.map((r) => ({ index: validAt[r.index] as number, error: r.error }))].sort((a, b) => a.index - b.index);
      }
    }
    metrics?.eventsIn.inc({ intake: this.name }, accepted);
    if (rejected.length > 0) metrics?.eventsInvalid.inc({ intake: this.name }, rejected.length);
    return { accepted, duplicates: 0, rejected };
  }

  /**
   * The intake refuses for a full buffer: `meteorzx_agent_intake_blocked{intake="http"}` is 1 until the
   * buffer has space again, as for the intakes that stop reading (it stayed 0 here, so an alert on it never
   * fired for the intake producers post to).
   */
  private bufferFull(): void {
    if (this.full) return;
    this.full = true;
    this.meter.blocked(true);
    this.options.logger?.info('buffer full: the intake answers 503 (block) or 507 (reject) until there is space');
    void this.options.buffer.waitForSpace().then(() => {
      this.full = false;
      this.meter.blocked(false);
      this.options.logger?.info('buffer has space again: the intake accepts events');
    });
  }

  /** Reads the raw body, failing fast past the body limit or the shared in-memory budget (`hold` throws). */
  private readBody(req: IncomingMessage, limit: number, hold: (bytes: number) => void): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let total = 0;
      const stop = (err: unknown) => {
        // A body all received is about to end: that request is appended and answered as usual.
        if (!req.complete) fail(err);
      };
      const fail = (err: unknown) => {
        this.reading.delete(stop);
        req.off('data', onData);
        // Stop reading the rest: the answer closes the connection.
        req.pause();
        reject(err);
      };
      this.reading.add(stop);
      const onData = (chunk: Buffer) => {
        total += chunk.byteLength;
        if (total > limit) return fail(tooLarge(total, limit));
        try {
          hold(chunk.byteLength);
        } catch (err) {
          return fail(err);
        }
        chunks.push(chunk);
      };
      req.on('data', onData);
      req.once('end', () => {
        this.reading.delete(stop);
        resolve(Buffer.concat(chunks, total));
      });
      // A client that goes away mid-body is its own business, not an error of ours to log with a stack.
      const gone = () => {
        this.reading.delete(stop);
        reject(ProtocolErrors.METEORZX_BODY_UNREADABLE('the client closed the connection before the body ended'));
      };
      req.once('error', gone);
      req.once('close', () => {
        if (!req.complete) gone();
      });
    });
  }

  private answerError(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const headers: Record<string, string> = {};
    const status = isMeteorError(err) ? err.status : undefined;
    if (status === 503) headers['retry-after'] = this.retryAfter;
    if (!req.complete) {
      // An unread body has to be read before the connection can carry another request. A busy answer's small
      // declared body is read and dropped (as nginx discards a body it answered early): a producer told 503
      // keeps its connection, where a reconnect per refusal — a TLS handshake, on a TLS intake — only added
      // to the load that caused it. Any other unread body closes the connection after the answer.
      if (discardable(req, err)) res.once('finish', () => req.resume());
      else headers.connection = 'close';
    }
    if (status === undefined || status >= 500) {
      const log = this.options.logger;
      if (status === undefined) log?.error({ err }, 'intake request failed');
      else log?.debug({ code: (err as { code?: string }).code }, 'intake answered 5xx');
    }
    if (res.destroyed) return;
    sendError(res, err, headers);
  }
}

/** The largest unread body a busy answer reads and drops to keep its connection. */
const DISCARD_BYTES = 1024 * 1024;

/** Whether the unread rest of this request's body is read and dropped after the answer `err`, not the connection closed. */
function discardable(req: IncomingMessage, err: unknown): boolean {
  if ((err as { code?: string }).code !== 'METEORZX_INTAKE_BUSY') return false;
  // Answered before its 100 Continue, a client may or may not send the body: the stream cannot be reused.
  if (req.headers.expect !== undefined) return false;
  const declared = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && declared !== undefined && /^\d{1,9}$/.test(declared) && Number(declared) <= DISCARD_BYTES;
}

/** Heap one JSON object or array costs once parsed, beyond the bytes of its text (measured: ≈ 64 B for `{}`). */
const PARSED_BYTES_PER_CONTAINER = 64;

/**
 * An estimate of the heap that parsing `body` builds beyond its bytes: every `{` and `[` (those inside
 * strings too, so it errs high) as one object or array. Other values cost at most a few times their
 * bytes; objects cost ≈ 20 times theirs.
 */
function parsedBytes(body: Buffer): number {
  let containers = 0;
  for (const byte of [0x7b, 0x5b]) {
    for (let i = body.indexOf(byte); i !== -1; i = body.indexOf(byte, i + 1)) containers += 1;
  }
  return containers * PARSED_BYTES_PER_CONTAINER;
}

function tooLarge(bytes: number, limit: number) {
  return ProtocolErrors.METEORZX_BODY_TOO_LARGE(`body is at least ${bytes} bytes, over the limit of ${limit} (maxBodyBytes)`);
}

/**
 * Inflates a gzip or deflate body as a stream, so each piece is counted
 * against the body limit and the shared budget (`hold` throws past it)
 * before the next is made: a gzip bomb stops at the limit, and many small
 * compressed bodies cannot together inflate past the budget.
 */
function decompress(raw: Buffer, encoding: string, limit: number, hold: (bytes: number) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = encoding === 'deflate' ? createInflate() : createGunzip();
    const chunks: Buffer[] = [];
    let total = 0;
    const fail = (err: unknown) => {
      stream.destroy();
      reject(err);
    };
    stream.on('data', (chunk: Buffer) => {
      total += chunk.byteLength;
      if (total > limit) return fail(ProtocolErrors.METEORZX_BODY_TOO_LARGE(`decompressed body is over the limit of ${limit} bytes (maxBodyBytes)`));
      try {
        hold(chunk.byteLength);
      } catch (err) {
        return fail(err);
      }
      chunks.push(chunk);
    });
    stream.once('end', () => resolve(Buffer.concat(chunks, total)));
    stream.once('error', (err) => fail(ProtocolErrors.METEORZX_BODY_UNREADABLE(`body is not valid ${encoding}: ${err.message}`)));
    stream.end(raw);
  });
}
