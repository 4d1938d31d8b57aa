import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { closeSpareConnection } from './http-connections.js';

export interface HttpConnectionCapOptions {
  /** The config key of the cap, named in the log line. */
  configKey: string;
  /** The counter of refused connections, named in the log line. */
  metric: string;
  logger?: { warn(obj: object, msg: string): void } | undefined;
  /** Told of each connection refused at the cap. */
  refused?: (() => void) | undefined;
}

/**
 * Caps a tracked HTTP server's connections (common/http-connections.ts):
 * without a cap, a flood of connections that send nothing took every
 * descriptor of the process — 1,100 of them under `ulimit -n 1024`, and every
 * other listener (an agent's intake, a gateway's MQTT) was refused, the
 * database's files next. At the cap a connection doing nothing gives way to
 * the newcomer (closeSpareConnection); only when all have requests in
 * progress is the newcomer refused, counted and logged (at most every 10 s).
 */
export function capHttpConnections(server: Server, max: number, opts: HttpConnectionCapOptions): void {
  server.maxConnections = max;
  server.on('connection', (socket: Socket) => closeSpareConnection(server, max, socket));
  let count = 0;
  let loggedAt = Number.NEGATIVE_INFINITY;
  server.on('drop', () => {
    opts.refused?.();
    count += 1;
    const now = performance.now();
    if (now - loggedAt < 10_000) return;
    loggedAt = now;
    opts.logger?.warn({ limit: max, refused: count }, `connections past ${opts.configKey} refused (see ${opts.metric})`);
    count = 0;
  });
}
