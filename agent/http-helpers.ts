import { createHash, timingSafeEqual } from 'node:crypto';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { dropAllConnections, dropIdleConnections } from '../common/http-connections.js';
import { isMeteorError, type ErrorResponse } from '../protocols/index.js';
import { AgentErrors } from './errors.js';

export { isLoopback } from '../common/loopback.js';
export { trackConnections } from '../common/http-connections.js';

/** What the agent's node:http listeners share: binding, JSON answers, bearer tokens. */

export interface ListenAddress {
  host: string;
  port: number;
}

/** Binds a server; a busy port or bad address becomes a typed error naming the config key. */
export function listen(server: NetServer, address: ListenAddress, configKey: string): Promise<ListenAddress> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const where = `${configKey} ${address.host}:${address.port}`;
      reject(
        err.code === 'EADDRINUSE'
          ? AgentErrors.METEORZX_PORT_IN_USE(`${where}: port already in use`, { cause: err, userError: true })
          : AgentErrors.METEORZX_LISTEN_FAILED(`${where}: ${err.message}`, { cause: err, userError: true }),
      );
    };
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      const bound = server.address() as AddressInfo;
      resolve({ host: bound.address, port: bound.port });
    });
  });
}


export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Answers with a typed error's status and code; anything else is a 500 (the details go to the log, not the client). */
export function sendError(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const meteor = isMeteorError(err) ? err : AgentErrors.METEORZX_INTERNAL('internal error');
  const body: ErrorResponse = { error: meteor.message, code: meteor.code };
  sendJson(res, meteor.status ?? 500, body, headers);
}

/** Constant-time bearer check: both sides hashed first, so lengths never leak through timing either. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  const given = createHash('sha256').update(m?.[1]?.trim() ?? '').digest();
  const expected = createHash('sha256').update(token).digest();
  return m !== null && timingSafeEqual(given, expected);
}

/**
 * Stops taking connections, waits for requests in progress (bounded), then drops what is left.
 * A server passed to trackConnections (common/http-connections.ts) also loses at once its connections
 * with no request in progress, those still in a TLS handshake included. `answered`, when given, is
 * waited for past the timeout before the drop: what must not lose its connection unanswered.
 */
export async function closeServer(server: Server, timeoutMs: number, answered?: () => Promise<unknown>): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  dropIdleConnections(server);
  const timer = setTimeout(() => {
    if (answered === undefined) dropAllConnections(server);
    else void answered().then(() => dropAllConnections(server));
  }, timeoutMs);
  await closed;
  clearTimeout(timer);
}
