import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { TlsOptions } from 'node:tls';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { createTlsListener } from '../../common/tls-server.js';
import type { MqttConnectionCap } from '../../common/mqtt-connection-cap.js';

export interface HostPort {
  host: string;
  port: number;
}

/** The MQTT transports the gateway can offer; each is optional. */
export interface MqttListenerSpecs {
  tcp?: HostPort;
  tls?: HostPort & { options: TlsOptions };
  /** With `options`, MQTT over secure WebSocket (wss). */
  ws?: HostPort & { path?: string; options?: TlsOptions };
}

export type ListenerName = keyof MqttListenerSpecs;

export interface BoundListener {
  name: ListenerName;
  host: string;
  port: number;
  /** The ws listener speaks TLS (wss). */
  secure?: boolean;
}

/** A listen() failure, carrying which listener failed so the caller can name its config key. */
export class ListenFailed extends Error {
  override readonly name = 'ListenFailed';
  constructor(
    readonly listener: ListenerName,
    readonly host: string,
    readonly port: number,
    readonly errno: string | undefined,
    cause: unknown,
  ) {
    super(`cannot listen on ${host}:${port} (${errno ?? 'error'})`, { cause });
  }
}

export type ConnectionHandler = (stream: Duplex | Socket, req?: IncomingMessage) => void;

type Closable = NetServer | HttpServer;

/** Starts every configured MQTT transport; `close` stops them (listeners only, not open connections). */
export class MqttListeners {
  private servers: { name: ListenerName; server: Closable; wss?: WebSocketServer }[] = [];
  /** Every connection still open, for dropConnections(). */
  private readonly connections = new Set<Duplex | Socket>();

  /**
   * `maxMessageBytes`: the largest WebSocket message read (default: ws' own
   * 100 MiB). ws buffers a message whole before the MQTT parser sees any of
   * it, so the packet size cap on the parser cannot bound it: give the same
   * bound here.
   */
  constructor(
    private readonly specs: MqttListenerSpecs,
    handle: ConnectionHandler,
    private readonly maxMessageBytes?: number,
    /** Bounds the connections over every listener (common/mqtt-connection-cap.ts). */
    private readonly cap?: MqttConnectionCap,
  ) {
    this.handle = (stream, req) => {
      this.track(stream);
      this.cap?.handled(stream, req?.socket ?? (stream as Socket));
      handle(stream, req);
    };
  }

  private track(stream: Duplex | Socket): void {
    this.connections.add(stream);
    stream.once('close', () => this.connections.delete(stream));
  }

  private readonly handle: ConnectionHandler;

  async start(): Promise<BoundListener[]> {
    const bound: BoundListener[] = [];
    try {
      if (this.specs.tcp) bound.push(await this.listen('tcp', createNetServer(this.handle), this.specs.tcp));
      if (this.specs.tls) bound.push(await this.listen('tls', createTlsListener(this.specs.tls.options, this.handle, (raw) => this.track(raw)), this.specs.tls));
      if (this.specs.ws) {
        const tls = this.specs.ws.options;
        const http = tls === undefined ? createHttpServer() : createHttpsServer(tls);
        // The TCP connection under each WebSocket, tracked from its accept: one that never completes its TLS
        // handshake or its upgrade is no stream yet, and would hold close() until the handshake timeout.
        http.on('connection', (raw: Socket) => this.track(raw));
        const path = this.specs.ws.path ?? '/mqtt';
        // MQTT over WebSocket carries binary frames; the subprotocol is "mqtt" (MQTT 3.1.1 §6).
        const wss = new WebSocketServer({ server: http, path, ...(this.maxMessageBytes === undefined ? {} : { maxPayload: this.maxMessageBytes }) });
        wss.on('connection', (socket, req) => this.handle(createWebSocketStream(socket), req));
        bound.push({ ...(await this.listen('ws', http, this.specs.ws, wss)), ...(tls === undefined ? {} : { secure: true }) });
      }
    } catch (err) {
      await this.close();
      throw err;
    }
    return bound;
  }

  private listen(name: ListenerName, server: Closable, at: HostPort, wss?: WebSocketServer): Promise<BoundListener> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(new ListenFailed(name, at.host, at.port, err.code, err));
      server.once('error', onError);
      const cap = this.cap;
      // Every accepted TCP connection, before any TLS handshake or WebSocket upgrade.
      if (cap !== undefined) server.on('connection', (raw: Socket) => cap.admit(raw));
      server.listen(at.port, at.host, () => {
        server.off('error', onError);
        this.servers.push({ name, server, ...(wss === undefined ? {} : { wss }) });
        const addr = server.address() as AddressInfo;
        resolve({ name, host: addr.address, port: addr.port });
      });
    });
  }

  /**
   * Destroys the connections still open. The broker closes its clients, but
   * a connection that has not completed its CONNECT is no client of it yet:
   * it would hold close() until aedes' connect timeout (30 s).
   */
  dropConnections(): void {
    for (const stream of this.connections) stream.destroy();
  }

  /** Stops accepting connections; resolves once every open one has ended (the broker closes them). */
  async close(): Promise<void> {
    const servers = this.servers;
    this.servers = [];
    await Promise.all(
      servers.map(
        ({ server, wss }) =>
          new Promise<void>((resolve) => {
            wss?.close();
            server.close(() => resolve());
          }),
      ),
    );
  }
}
