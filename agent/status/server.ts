import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Logger } from 'pino';
import { capHttpConnections } from '../../common/http-connection-cap.js';
import type { TlsServerOptions } from '../../common/tls-server.js';
import type { AgentStatus } from '../../protocols/index.js';
import type { AgentBuffer } from '../buffer/types.js';
import { AgentErrors } from '../errors.js';
import { bearerMatches, closeServer, isLoopback, listen, sendError, sendJson, trackConnections, type ListenAddress } from '../http-helpers.js';
import type { AgentMetrics } from '../metrics.js';
import { PullBudget, servePull } from '../pull/pull-handler.js';

export interface StatusServerOptions {
  listen: ListenAddress;
  /** Bearer token every request must carry; required on a non-loopback bind. */
  token?: string;
  /** Allow a non-loopback bind without a token (`--insecure`). */
  insecure?: boolean;
  status: () => AgentStatus;
  metrics: AgentMetrics;
  /** For `GET /v1/events` (pull); without it the route answers 404. */
  buffer?: AgentBuffer;
  /** Serve HTTPS instead of HTTP (common/tls-server.ts). */
  tls?: TlsServerOptions;
  /** Most events one pull answer holds. */
  maxPullEvents?: number;
  /** Answer bytes all pulls in progress may hold in memory; past it a pull gets 503 + Retry-After. Default 32 MiB. */
  maxPullBytesHeld?: number;
  /** A connection whose client neither sends nor reads for this long is closed, ms. Default 30 s. */
  idleTimeoutMs?: number;
  /** TCP connections at once (`pull.maxConnections`); see capHttpConnections. Default 64. */
  maxConnections?: number;
  logger?: Logger;
}

/**
 * The agent's own small HTTP API on `pull.listen`: status, Prometheus
 * metrics and the pull of buffered events. Plain node:http on purpose: the
 * agent must stay light and never load the gateway's fastify.
 */
export class StatusServer {
  private readonly server: Server;
  private bound: ListenAddress | undefined;
  private closed: Promise<void> | undefined;
  private readonly pullBudget: PullBudget;

  constructor(private readonly options: StatusServerOptions) {
    this.pullBudget = new PullBudget(options.maxPullBytesHeld ?? 32 << 20);
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        options.logger?.error({ err, url: req.url }, 'status request failed');
        sendError(res, err);
      });
    };
    // Checked every second, not Node's 30 s: a connection that sent no headers held its slot up to 30 s.
    const timeouts = { requestTimeout: 30_000, headersTimeout: 10_000, connectionsCheckingInterval: 1000 };
    this.server = options.tls === undefined ? createServer(timeouts, handler) : createHttpsServer({ ...timeouts, ...options.tls }, handler);
    // requestTimeout bounds reading the request, not sending the answer: a client that stops reading a
    // pull answer would hold its bytes (and its share of the pull budget) for as long as it stays connected.
    // With no 'timeout' listener, node:http destroys a socket idle this long.
    this.server.setTimeout(options.idleTimeoutMs ?? 30_000);
    trackConnections(this.server);
    // Without a cap, 1,100 connections that send nothing took every descriptor under `ulimit -n 1024`: the HTTP
    // intake answered nothing (reset), the buffer's files next. Pull clients are few (a gateway, ops, a scraper).
    capHttpConnections(this.server, options.maxConnections ?? 64, {
      configKey: 'pull.maxConnections',
      metric: 'meteorzx_agent_pull_connections_refused_total',
      logger: options.logger,
      refused: () => options.metrics.pullConnectionsRefused.inc(),
    });
  }

  async start(): Promise<void> {
    const { listen: address, token, insecure } = this.options;
    if (!isLoopback(address.host) && token === undefined && insecure !== true) {
      throw AgentErrors.METEORZX_INSECURE_BIND(
        `pull.listen ${address.host}:${address.port} is not a loopback address and pull.token is not set; set a token, bind 127.0.0.1, or pass --insecure`,
        { userError: true },
      );
    }
    this.bound = await listen(this.server, address, 'pull.listen');
  }

  address(): ListenAddress {
    if (this.bound === undefined) throw new Error('StatusServer.address() before start()');
    return this.bound;
  }

  close(): Promise<void> {
    this.closed ??= closeServer(this.server, 5_000);
    return this.closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = URL.parse(req.url ?? '/', 'http://agent');
    if (url === null) {
      sendError(res, AgentErrors.METEORZX_BAD_REQUEST(`the request target ${JSON.stringify((req.url ?? '').slice(0, 80))} is not a URL path`));
      return;
    }
    const token = this.options.token;
    if (token !== undefined && !bearerMatches(req.headers.authorization, token)) {
      sendError(res, AgentErrors.METEORZX_UNAUTHORIZED('missing or wrong bearer token'), { 'www-authenticate': 'Bearer' });
      return;
    }
    const route = ROUTES.has(url.pathname) ? url.pathname : undefined;
    if (route === undefined || (route === '/v1/events' && this.options.buffer === undefined)) {
      sendError(res, AgentErrors.METEORZX_NOT_FOUND(`no route ${req.method ?? ''} ${url.pathname}`));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(res, AgentErrors.METEORZX_METHOD_NOT_ALLOWED(`${req.method ?? ''} not allowed on ${route}; use GET`), { allow: 'GET' });
      return;
    }
    switch (route) {
      case '/v1/status':
        sendJson(res, 200, this.options.status());
        return;
      case '/healthz':
        sendJson(res, 200, { ok: true });
        return;
      case '/metrics': {
        const registry = this.options.metrics.registry;
        const text = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(text);
        return;
      }
      default:
        await this.pull(url, req.method ?? 'GET', res);
    }
  }

  /** `GET /v1/events?after=SEQ&limit=N`: see agent/pull/pull-handler.ts. */
  private pull(url: URL, method: string, res: ServerResponse): Promise<void> {
    return servePull(url, method, res, { buffer: this.options.buffer as AgentBuffer, maxLimit: this.options.maxPullEvents ?? 10_000, budget: this.pullBudget });
  }
}

const ROUTES: ReadonlySet<string> = new Set(['/v1/status', '/metrics', '/healthz', '/v1/events']);
