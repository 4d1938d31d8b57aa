import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { capHttpConnections } from '../../common/http-connection-cap.js';
import { dropAllConnections, dropIdleConnections, trackConnections } from '../../common/http-connections.js';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { answerAfterHalfClose } from '../../common/http-half-close.js';
import { ProtocolErrors } from '../../protocols/index.js';
import { GatewayErrors } from '../errors.js';
import type { ApiContext } from './api-context.js';
import { registerAuth } from './auth-hook.js';
import { sendError } from './reply-error.js';
import { registerHealth } from './routes/health.js';
import { registerIngest } from './routes/ingest.js';
import { registerPull } from './routes/pull.js';
import { registerQuery } from './routes/query.js';
import { registerVerify } from './routes/verify.js';

export interface HttpApiOptions extends ApiContext {
  logger: Logger;
  /** Key and certificate (and `ca` + requestCert for mutual TLS): serve HTTPS instead of HTTP. */
  tls?: SecureContextOptions & { requestCert?: boolean };
  /** Most time a client may take to send a whole request, headers and body (ms); default REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
  /** Longest close() waits for requests in progress before dropping their connections (ms); default CLOSE_TIMEOUT_MS. */
  closeTimeoutMs?: number;
  /** Most time a connection may take to send a request's headers (ms, `http.headersTimeout`); default HEADERS_TIMEOUT_MS. */
  headersTimeoutMs?: number;
  /** TCP connections at once (`http.maxConnections`); see capHttpConnections. Default: no cap (tests). */
  maxConnections?: number;
  /** Told of each connection refused at the cap (meteorzx_gateway_http_connections_refused_total). */
  onConnectionRefused?: () => void;
}

/** Default of `http.headersTimeout`, ms: a client sends its headers at once; a connection that sends none is a flood's. */
export const HEADERS_TIMEOUT_MS = 10_000;

/**
 * How long a client may take to send a whole request (ms). fastify turns
 * off Node's own limit (300 s) by default, so an upload that stalls — a
 * client that sends headers and a few bytes, a peer gone without a FIN —
 * held its ingest slot (`maxInflightIngests`) forever, and that many of
 * them kept every other client at 503. 8 MiB (maxBodyBytes) takes ≈ 7 s
 * at 10 Mbit/s. Waiting for the answer (a commit, a verify) is not counted.
 */
export const REQUEST_TIMEOUT_MS = 60_000;

/**
 * How long a stop (SIGTERM, or the restart of a SIGHUP) waits for requests
 * in progress before it drops their connections (ms). A request whose body
 * has arrived is answered within it (its commit takes milliseconds); one
 * still uploading is cut off, and its client resends.
 */
export const CLOSE_TIMEOUT_MS = 5_000;

export interface BoundHttp {
  host: string;
  port: number;
  protocol: 'http' | 'https';
}

/**
 * The gateway's HTTP API on fastify. Bodies are read as raw buffers (any
 * Content-Type, up to maxBodyBytes) and decoded by the ingest route itself,
 * so NDJSON, gzip and the bad-input answers follow one code path.
 */
export function buildHttpApi(opts: HttpApiOptions): FastifyInstance {
  const requestTimeout = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  // Node checks both timeouts every connectionsCheckingInterval: at its 30 s default (and a 60 s headersTimeout) a
  // connection that never sent a request held its descriptor for up to 90 s. Checking every second is one pass over
  // the connections (≤ http.maxConnections).
  const headersTimeout = Math.min(opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS, requestTimeout);
  const serverTimes = { connectionsCheckingInterval: Math.min(1000, requestTimeout), headersTimeout };
  const app = Fastify({
    loggerInstance: opts.logger,
    // One log line per request would cost more than the request at ingest rates.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.limits.maxBodyBytes,
    // Keep-alive connections would hold close() open; they are closed when draining ends.
    forceCloseConnections: 'idle',
    requestTimeout,
    // Node checks request times at this interval (30 s by default), so a stalled upload ends within 2× the timeout;
    // and it enforces requestTimeout only while headersTimeout (60 s by default) is not longer.
    ...(opts.tls === undefined ? { http: serverTimes } : { https: { ...opts.tls, ...serverTimes } }),
  }) as unknown as FastifyInstance;
  trackConnections(app.server);
  if (opts.maxConnections !== undefined) {
    // Without a cap, connections that send nothing took every descriptor: under `ulimit -n 1024`, 1,100 of them
    // and HTTP ingest, /readyz and every MQTT client were refused (common/http-connection-cap.ts).
    capHttpConnections(app.server, opts.maxConnections, {
      configKey: 'http.maxConnections',
      metric: 'meteorzx_gateway_http_connections_refused_total',
      logger: opts.logger,
      refused: opts.onConnectionRefused,
    });
  }
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: opts.limits.maxBodyBytes }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err, req, reply) => {
    if ((err as { statusCode?: number }).statusCode === undefined) req.log.error({ err }, 'request failed');
    // fastify's own "Request body is too large" names no limit (DESIGN §2: an error names the limit).
    if ((err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, ProtocolErrors.METEORZX_BODY_TOO_LARGE(`body is over the limit of ${opts.limits.maxBodyBytes} bytes (maxBodyBytes)`));
    }
    return sendError(reply, err);
  });
  app.setNotFoundHandler((req, reply) =>
    sendError(reply, GatewayErrors.METEORZX_NOT_FOUND(`no route ${req.method} ${req.url.split('?')[0]?.slice(0, 100) ?? ''}`)),
  );
  answerAfterHalfClose(app.server);
  registerExpectContinue(app, opts.limits.maxBodyBytes);
  registerAuth(app, opts);
  registerIngest(app, opts);
  registerQuery(app, opts);
  registerVerify(app, opts);
  registerPull(app, opts);
  registerHealth(app, opts);
  return app;
}

/**
 * `Expect: 100-continue` (curl sends it for bodies over 1 MiB, .NET and Java
 * clients can): the body is invited only once the request has passed every
 * check that needs no body — auth, the ingest slot, the declared length.
 * Node's default answers 100 at once, so a client whose request was refused
 * (401, 503, 413) sent its whole body to a server that had answered and was
 * closing, and often saw a reset instead of the answer. A request answered
 * without its 100 closes its connection: the client may or may not send the
 * body it was not invited to, so the stream cannot be reused.
 */
function registerExpectContinue(app: FastifyInstance, maxBodyBytes: number): void {
  const waiting = new WeakSet<IncomingMessage>();
  app.server.on('checkContinue', (req: IncomingMessage, res) => {
    waiting.add(req);
    app.server.emit('request', req, res);
  });
  // preParsing runs after the onRequest hooks (auth, the ingest slot) and before the body is read.
  app.addHook('preParsing', async (req, reply, payload) => {
    if (!waiting.has(req.raw)) return payload;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBodyBytes) {
      throw ProtocolErrors.METEORZX_BODY_TOO_LARGE(`body is ${declared} bytes, over the limit of ${maxBodyBytes} (maxBodyBytes)`);
    }
    waiting.delete(req.raw);
    reply.raw.writeContinue();
    return payload;
  });
  app.addHook('onSend', async (req, reply, payload) => {
    if (waiting.has(req.raw)) void reply.header('connection', 'close');
    return payload;
  });
}

/** HttpApi with an explicit lifecycle: listen in start(), drain in close(). */
export class HttpApi {
  readonly app: FastifyInstance;
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: HttpApiOptions) {
    this.app = buildHttpApi(opts);
  }

  /** Binds; the promise rejects with the raw listen error (EADDRINUSE...) for the caller to name its config key. */
  async start(host: string, port: number): Promise<BoundHttp> {
    await this.app.listen({ host, port });
    const addr = this.app.server.address() as AddressInfo;
    return { host: addr.address, port: addr.port, protocol: this.opts.tls === undefined ? 'http' : 'https' };
  }

  /** Stops accepting, waits for requests in progress (their ingests finish and answer), at most closeTimeoutMs. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.drain();
    return this.closing;
  }

  private async drain(): Promise<void> {
    // fastify's close waits for every connection with a request under way, and Node stops timing requests
    // out once its server closes (requestTimeout no longer applies): a client that stalled mid-upload, or
    // connected and sent nothing, held the stop, and a SIGHUP's restart, for ever.
    const server = this.app.server;
    const timer = setTimeout(() => dropAllConnections(server), this.opts.closeTimeoutMs ?? CLOSE_TIMEOUT_MS);
    try {
      const closed = this.app.close();
      // A connection with no request in progress has nothing to wait for: one that connected and sent
      // nothing, or on HTTPS is still in (or stalled in) its handshake, held the stop for the whole timeout.
      dropIdleConnections(server);
      await closed;
    } finally {
      clearTimeout(timer);
    }
  }
}
