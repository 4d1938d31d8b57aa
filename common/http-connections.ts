import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';

/**
 * What an HTTP(S) server's stop needs of its connections (the agent's
 * intake and pull listener, the gateway's API). Node's
 * closeIdleConnections() leaves a connection that has sent no request yet
 * (a client that connected and waits, a keep-alive pool's spare) and, on
 * HTTPS, one still in its TLS handshake; server.close() then waited for them
 * until the close timeout or the handshake timeout.
 */
interface Connections {
  /** Every TCP connection, TLS handshakes not yet done included. */
  raw: Set<Socket>;
  /** The connections HTTP runs on (TLS ones once their handshake is done), with their requests in progress. */
  requests: Map<Socket, number>;
  /** On a TLS server, the peers (address|port) whose handshake is done: the raw connections of the others are still in theirs. */
  secured?: Set<string>;
  /** The connections that have had a request answered: idle, they are a client's kept-alive spares. */
  served: WeakSet<Socket>;
}

const tracked = new WeakMap<Server, Connections>();

function peerKey(socket: Socket): string {
  return `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`;
}

/** Keeps count of each connection's requests in progress, for dropIdleConnections and dropAllConnections. */
export function trackConnections(server: Server): void {
  const connections: Connections = { raw: new Set(), requests: new Map(), served: new WeakSet() };
  tracked.set(server, connections);
  server.on('connection', (socket: Socket) => {
    connections.raw.add(socket);
    socket.once('close', () => connections.raw.delete(socket));
  });
  const opened = (socket: Socket): void => {
    connections.requests.set(socket, 0);
    socket.once('close', () => connections.requests.delete(socket));
  };
  if (server instanceof TlsServer) {
    const secured = new Set<string>();
    connections.secured = secured;
    server.on('secureConnection', (socket: Socket) => {
      opened(socket);
      const peer = peerKey(socket);
      secured.add(peer);
      socket.once('close', () => secured.delete(peer));
    });
  } else server.on('connection', opened);
  const begin = (req: IncomingMessage, res: ServerResponse): void => {
    const socket = req.socket;
    connections.requests.set(socket, (connections.requests.get(socket) ?? 0) + 1);
    res.once('close', () => {
      const n = connections.requests.get(socket);
      if (n !== undefined) connections.requests.set(socket, Math.max(0, n - 1));
      connections.served.add(socket);
    });
  };
  server.on('request', begin);
  server.on('checkContinue', begin);
}

/** Destroys a tracked server's connections with no request in progress, those still in a TLS handshake included. */
export function dropIdleConnections(server: Server): void {
  server.closeIdleConnections();
  const connections = tracked.get(server);
  if (connections === undefined) return;
  for (const [socket, n] of connections.requests) if (n === 0) socket.destroy();
  const secured = connections.secured;
  if (secured !== undefined) for (const socket of connections.raw) if (!secured.has(peerKey(socket))) socket.destroy();
}

/** Destroys every connection of a server, those HTTP never saw (a TLS handshake not finished) included. */
export function dropAllConnections(server: Server): void {
  server.closeAllConnections();
  for (const socket of tracked.get(server)?.raw ?? []) socket.destroy();
}

/**
 * Keeps a connection slot free under a connection cap of `max`: once a
 * tracked server holds `max` connections, destroys one connection that is
 * doing nothing, so that the next one is not refused. First the most
 * recently opened one that has had a request answered and has none in
 * progress (a client's kept-alive spare): Node refuses every connection past
 * maxConnections as it arrives, and client pools (undici's, say) keep more
 * connections than they have requests in flight, each idle for up to the
 * keep-alive timeout a server announces, so a few hundred producers were
 * refused new connections while most held connections sat idle. Failing
 * that, the connection that has waited longest without sending a request
 * (nothing, or headers not finished, or a TLS handshake not finished): a
 * flood of connections that never send one held every slot until the
 * headers timeout, and opened again, for good — every real client refused.
 * A real client sends its request as soon as it is connected, so it is the
 * newest of the waiting ones, the last to give way; `newcomer` (the
 * connection that just arrived) never does. Returns whether one was closed.
 */
export function closeSpareConnection(server: Server, max: number, newcomer?: Socket): boolean {
  const connections = tracked.get(server);
  if (connections === undefined || connections.raw.size < max) return false;
  // The newest spare: pools hand requests to their first free connection, so the oldest are the likeliest to be reused next.
  const held = [...connections.requests];
  for (let i = held.length - 1; i >= 0; i -= 1) {
    const [socket, n] = held[i] as [Socket, number];
    if (n === 0 && connections.served.has(socket)) {
      socket.destroy();
      return true;
    }
  }
  const waiting = oldestWaiting(connections, newcomer);
  waiting?.destroy();
  return waiting !== undefined;
}

/** The oldest connection that has not sent a request yet: a TLS handshake not done first, then HTTP ones in the order they opened. */
function oldestWaiting(connections: Connections, newcomer: Socket | undefined): Socket | undefined {
  const secured = connections.secured;
  if (secured !== undefined) {
    for (const socket of connections.raw) if (socket !== newcomer && !secured.has(peerKey(socket))) return socket;
  }
  for (const [socket, n] of connections.requests) if (socket !== newcomer && n === 0 && !connections.served.has(socket)) return socket;
  return undefined;
}
