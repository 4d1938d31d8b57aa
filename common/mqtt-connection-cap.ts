import type { Socket } from 'node:net';

export interface MqttConnectionCapOptions {
  /** Connections at once over every listener of the broker (`mqtt.maxConnections`, `intake.mqtt.maxConnections`). */
  max: number;
  /** The config key of the bound and the metric counting refusals, named in the log line. */
  configKey: string;
  metric: string;
  /** Told of each connection refused. */
  onRefused?: (() => void) | undefined;
  logger?: { warn(obj: object, msg: string): void } | undefined;
}

/**
 * Bounds an aedes broker's connections: the gateway's (`mqtt.maxConnections`)
 * and the agent's edge broker (`intake.mqtt.maxConnections`). Without a
 * bound, connections that never send CONNECT took every descriptor of the
 * gateway until aedes' 30 s connect timeout: under `ulimit -n 1024`, 1,100 of
 * them, and HTTP ingest was refused too (LevelDB's files next), for good
 * while the flood reopened them; with a bound that refuses newcomers (the
 * edge broker's), such a flood kept every device out. Past the bound, the connection that has waited
 * longest without a CONNECT the broker accepted gives way to the newcomer —
 * a device sends its CONNECT as soon as it is connected, so it is the last
 * to give way; only when every connection is a client is the newcomer
 * refused, counted and logged (at most every 10 s).
 *
 * Connections are counted as accepted (TCP, under TLS and WebSocket too)
 * and known by their peer's address and port, which the TLS socket, the
 * WebSocket's upgrade request and the raw socket share.
 */
export class MqttConnectionCap {
  /** Every accepted connection, oldest first, with its peer key. */
  private readonly accepted = new Map<Socket, string>();
  /** Peer keys of connections whose CONNECT the broker accepted. */
  private readonly clients = new Set<string>();
  /** The stream handed to the broker → its peer key (for `connected`). */
  private readonly peers = new WeakMap<object, string>();
  private refused = 0;
  private loggedAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly opts: MqttConnectionCapOptions) {}

  /** A connection accepted by a listener (its raw TCP socket). */
  admit(raw: Socket): void {
    const key = peerKey(raw);
    this.accepted.set(raw, key);
    raw.once('close', () => {
      this.accepted.delete(raw);
      this.clients.delete(key);
    });
    if (this.accepted.size <= this.opts.max) return;
    for (const [other, k] of this.accepted) {
      if (other !== raw && !this.clients.has(k)) {
        other.destroy();
        return;
      }
    }
    raw.destroy();
    this.refuse();
  }

  /** The stream a listener hands to the broker for `raw`'s connection (the TLS socket, the WebSocket stream). */
  handled(stream: object, socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): void {
    this.peers.set(stream, peerKey(socket));
  }

  /** The broker accepted the CONNECT on `conn` (aedes `client.conn`): that connection no longer gives way. */
  connected(conn: object): void {
    const key = this.peers.get(conn);
    if (key !== undefined) this.clients.add(key);
  }

  private refuse(): void {
    this.opts.onRefused?.();
    this.refused += 1;
    const now = performance.now();
    if (now - this.loggedAt < 10_000) return;
    this.loggedAt = now;
    this.opts.logger?.warn({ limit: this.opts.max, refused: this.refused }, `connections past ${this.opts.configKey} refused (see ${this.opts.metric})`);
    this.refused = 0;
  }
}

function peerKey(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  return `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`;
}
