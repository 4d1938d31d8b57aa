import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { MAX_STATUS_BYTES, tryParseTopic, type Limits } from '../../protocols/index.js';
import type { Ingestor } from '../pipeline/ingestor.js';
import type { MqttUsers } from '../auth/mqtt-users.js';
import { MqttConnectionCap } from '../../common/mqtt-connection-cap.js';
import { MqttListeners, type BoundListener, type MqttListenerSpecs } from './listeners.js';
import { PublishGate, PublishRefused, type PublishContext, type PublishRoute } from './publish-gate.js';
import { clientPeer } from './peer.js';
import {
  boundedOfflineQueues,
  cappedHandle,
  forwardEventsBestEffort,
  incomingWithoutPayload,
  MAX_QUEUED_BYTES,
  MAX_QUEUED_MESSAGES,
  maxPacketBytes,
  noPacketIdCache,
  logClientErrors,
} from '../../common/mqtt-packet-cap.js';
import { expireSessions } from '../../common/mqtt-session-expiry.js';

export interface MqttIngressOptions {
  ingestor: Ingestor;
  users: MqttUsers;
  limits: Limits;
  listeners: MqttListenerSpecs;
  logger: Logger;
  /** Broker id, shown in $SYS topics. */
  id?: string;
  /** See PublishGate: how long a publish waits out an overloaded pipeline (ms). */
  maxWaitMs?: number;
  /** Called whenever the number of connected clients changes (the metrics gauge). */
  onClientCount?: (count: number) => void;
  /**
   * Whether a subscriber may hear event publishes as their client sent them
   * (default true). The server says false while the pipeline transforms or
   * drops events: what was sent is then not what was stored, and a
   * subscription must not undo a mask.
   */
  forwardEvents?: boolean;
  /** `mqtt.sessionExpiry`: ms a persistent session outlives its client's connection; unset, for good (aedes' own way). */
  sessionExpiryMs?: number;
  /** Called for each persistent session ended by `sessionExpiryMs` (the metrics counter). */
  onSessionExpired?: () => void;
  /** Called with each status an agent publishes on audit/<agent>/status (its delivered cursor: TailClaims). */
  onStatus?: (agent: string, payload: Buffer) => void;
  /** Connections at once over every listener (`mqtt.maxConnections`; common/mqtt-connection-cap.ts). Default: no bound (tests). */
  maxConnections?: number;
  /** Called for each connection refused at `maxConnections` (the metrics counter). */
  onConnectionRefused?: () => void;
}

/**
 * What the broker keeps per authenticated client: who it is, its peer
 * string (built once, not per PUBLISH) and the route of the topic it last
 * published on — a device publishes on one topic, so parsing and checking
 * it once is enough.
 */
interface ClientState {
  ctx: PublishContext;
  topic?: string;
  route?: PublishRoute;
}

/** Marks a PUBLISH whose events the pipeline stored (see `forwardStored`). */
const STORED = Symbol('meteorzx.stored');

/**
 * Could a subscription with this filter hear an audit/<source>/events
 * publish? Conservative: any wildcard, or an `…/events` topic.
 */
function mayHearEvents(filter: string): boolean {
  return filter.includes('+') || filter.includes('#') || filter.endsWith('/events');
}

const NOT_AUTHORIZED = 5;
const BAD_CREDENTIALS = 4;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/**
 * The embedded MQTT broker (aedes 1.x, MQTT 3.1.1) as an ingress: clients
 * authenticate against `auth.mqtt`, publish events on audit/<source>/events,
 * and get their PUBACK only once the events are durable (see PublishGate).
 */
export class MqttIngress {
  private broker: Aedes | undefined;
  private listeners: MqttListeners | undefined;
  /** Per authenticated client; a WeakMap so a closed client takes its entry with it. */
  private readonly clients = new WeakMap<Client, ClientState>();
  /** Publishes inside the pipeline, and what close() waits on to see them all answered. */
  private inflight = 0;
  private onIdle: (() => void) | undefined;
  private draining = false;
  private closing: Promise<void> | undefined;
  /**
   * Set for good once any client subscribed to a filter that may hear
   * stored events (an anonymous loopback client may subscribe to anything).
   * Until then the broker does not forward stored events: nobody could
   * receive them, and aedes' publish path (an offline-queue lookup, two
   * topic matches, hooks) runs on every message for nothing.
   */
  private eventListeners = false;

  constructor(private readonly opts: MqttIngressOptions) {}

  get connectedClients(): number {
    return this.broker?.connectedClients ?? 0;
  }

  async start(): Promise<BoundListener[]> {
    const { opts } = this;
    const gate = new PublishGate({
      ingestor: opts.ingestor,
      limits: opts.limits,
      ...(opts.maxWaitMs === undefined ? {} : { maxWaitMs: opts.maxWaitMs }),
    });
    const log = opts.logger;
    noPacketIdCache();
    const broker = await Aedes.createBroker({
      ...(opts.id === undefined ? {} : { id: opts.id }),
      // The default of 23 is MQTT 3.1's; 3.1.1 clients (mosquitto_pub, MQTT.js) send longer ids.
      maxClientsIdLength: 256,
      authenticate: (client, username, password, done) => {
        opts.users.authenticate(username, password).then(
          (identity) => {
            if (identity === undefined) {
              log.warn({ client: client.id, username, peer: clientPeer(client) }, 'mqtt authentication failed');
              done(authError('bad user name or password', BAD_CREDENTIALS), false);
              return;
            }
            this.clients.set(client, { ctx: { clientId: client.id, peer: clientPeer(client), identity } });
            done(null, true);
          },
          (err: unknown) => done(authError(`authentication error: ${String(err)}`, NOT_AUTHORIZED), false),
        );
      },
      authorizePublish: (client, packet, done) => {
        if (client === null) {
          // The broker's own publishes (wills of vanished clients) carry no events: pass.
          done(null);
          return;
        }
        if (this.draining) {
          // Nothing is acknowledged after drain starts: the client reconnects and resends.
          done(new Error('gateway is shutting down'));
          return;
        }
        const state = this.clients.get(client);
        if (state === undefined) {
          done(new Error('not authenticated'));
          return;
        }
        let route = state.route;
        if (state.topic !== packet.topic || route === undefined) {
          try {
            route = gate.route(state.ctx, packet.topic);
          } catch (err) {
            this.refuse(client, packet.topic, err, done);
            return;
          }
          state.topic = packet.topic;
          state.route = route;
        }
        if (route.kind === 'pass') {
          if (route.topic !== 'status') {
            // A retained command would be replayed to the agent at every resubscribe; a bridge's state is not
            // kept either: any client may name a bridge, and each name retained would stay in memory.
            packet.retain = false;
          } else if (packet.payload.length > MAX_STATUS_BYTES) {
            this.refuse(client, packet.topic, new PublishRefused(`status payload of ${packet.payload.length} bytes is over ${MAX_STATUS_BYTES}`), done);
            return;
          } else if (opts.onStatus !== undefined) {
            const agent = tryParseTopic(packet.topic)?.source;
            if (agent !== undefined) opts.onStatus(agent, packet.payload as Buffer);
          }
          done(null);
          return;
        }
        this.inflight += 1;
        gate.ingest(state.ctx, route.source, packet.payload as Buffer, () => client.closed || client.conn.destroyed).then(
          () => {
            this.settled();
            // Events are stored here, not by the broker: a retained event would pin its payload in memory.
            packet.retain = false;
            (packet as { [STORED]?: true })[STORED] = true;
            done(null);
          },
          (err: unknown) => {
            this.settled();
            this.refuse(client, packet.topic, err, done);
          },
        );
      },
      authorizeSubscribe: (client, sub, done) => {
        if (!this.mayHear(client, sub.topic)) {
          log.warn({ client: client.id, topic: sub.topic.slice(0, 200) }, 'mqtt subscription refused');
          // A null subscription makes aedes answer SUBACK 0x80 (failure) and keep the connection.
          done(null, null);
          return;
        }
        if (mayHearEvents(sub.topic)) this.eventListeners = true;
        done(null, sub);
      },
      // Checked again at delivery, as Mosquitto checks its ACL: a login that takes over another's session (same
      // client id, clean=false) must not be handed what was queued for that session's subscriptions.
      authorizeForward: (client, packet) => (this.mayHear(client, packet.topic) ? packet : null),
    });
    forwardEventsBestEffort(broker);
    this.forwardStored(broker);
    incomingWithoutPayload(broker);
    if (opts.sessionExpiryMs !== undefined) {
      expireSessions(broker, {
        expiryMs: opts.sessionExpiryMs,
        onExpire: (client) => {
          log.debug({ client }, 'mqtt session expired');
          opts.onSessionExpired?.();
        },
        onError: (client, err) => log.warn({ client, err: String(err) }, 'mqtt session expiry failed'),
      });
    }
    boundedOfflineQueues(broker, MAX_QUEUED_MESSAGES, MAX_QUEUED_BYTES, (client) =>
      log.warn({ client, maxMessages: MAX_QUEUED_MESSAGES, maxBytes: MAX_QUEUED_BYTES }, 'mqtt session queue full while its client is away: dropping messages for it'),
    );
    broker.on('client', () => opts.onClientCount?.(broker.connectedClients));
    broker.on('clientDisconnect', () => opts.onClientCount?.(broker.connectedClients));
    logClientErrors(broker, log, 'mqtt');
    broker.on('connectionError', (client: Client, err: Error) => log.debug({ peer: clientPeer(client), err: err.message }, 'mqtt connection error'));
    this.broker = broker;
    const maxBytes = maxPacketBytes(opts.limits.maxBodyBytes);
    const handle = cappedHandle<Parameters<typeof broker.handle>[0]>(broker, maxBytes, (client, err) =>
      log.warn({ client: client.id, peer: clientPeer(client), err: err.message }, 'mqtt packet too large'),
    );
    // A WebSocket message holds a packet, a part of one or a few small ones: the largest packet is its bound too.
    const cap =
      opts.maxConnections === undefined ? undefined : new MqttConnectionCap({
            max: opts.maxConnections,
            configKey: 'mqtt.maxConnections',
            metric: 'meteorzx_gateway_mqtt_connections_refused_total',
            onRefused: opts.onConnectionRefused,
            logger: log,
          });
    // A client whose CONNECT was accepted no longer gives way to a newcomer at the cap.
    if (cap !== undefined) broker.on('client', (client: Client) => cap.connected(client.conn));
    this.listeners = new MqttListeners(opts.listeners, handle, maxBytes, cap);
    try {
      return await this.listeners.start();
    } catch (err) {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      this.broker = undefined;
      throw err;
    }
  }

  /**
   * After the PUBACK, aedes hands every QoS 1 publish to its own publish
   * path for delivery to subscribers. A stored event skips it while no
   * subscription could hear it (`eventListeners`), and always when the
   * pipeline changes events (`forwardEvents` false); everything else
   * (status, commands, wills) takes it as before.
   */
  private forwardStored(broker: Aedes): void {
    const publish = broker.publish.bind(broker) as (packet: object, client: unknown, done?: (err?: Error | null) => void) => void;
    (broker as { publish: typeof publish }).publish = (packet, client, done) => {
      if ((packet as { [STORED]?: true })[STORED] === true && (!this.eventListeners || this.opts.forwardEvents === false)) {
        done?.(null);
        return;
      }
      publish(packet, client, done);
    };
  }

  /** An authenticated client hears only its own command and status topics; anonymous (loopback) hears anything. */
  private mayHear(client: Client, topic: string): boolean {
    const own = this.clients.get(client)?.ctx.identity.source;
    return own === undefined || topic === `audit/${own}/cmd` || topic === `audit/${own}/status`;
  }

  /** A publish refused (PublishRefused) or failed in the pipeline: logged, and `done` closes the client's connection. */
  private refuse(client: Client, topic: string, err: unknown, done: (err: Error) => void): void {
    const refused = err instanceof PublishRefused;
    this.opts.logger[refused ? 'warn' : 'error'](
      { client: client.id, topic: topic.slice(0, 200), err: (err as Error).message },
      refused ? 'mqtt publish refused, closing connection' : 'mqtt ingest failed, closing connection so the client retries',
    );
    done(err as Error);
  }

  private settled(): void {
    this.inflight -= 1;
    if (this.inflight === 0) this.onIdle?.();
  }

  /**
   * Drains: stop accepting connections and publishes, let every publish
   * already inside the pipeline finish (and its PUBACK go out), then
   * disconnect clients. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  /**
   * Publishes a command to audit/<agent>/cmd at QoS 1 (issue 5: the gateway
   * asks an agent behind NAT to re-push a range over its own link).
   */
  publishCommand(agent: string, payload: string): Promise<void> {
    const broker = this.broker;
    if (broker === undefined || this.draining) return Promise.reject(new Error('MQTT broker not running'));
    return new Promise((resolve, reject) => {
      broker.publish(
        { cmd: 'publish', topic: `audit/${agent}/cmd`, payload: Buffer.from(payload), qos: 1, retain: false, dup: false },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  /**
   * Whether the agent's retained presence (audit/<agent>/status, issue 5)
   * says online. An agent subscribes to its cmd topic before it announces
   * itself, so "online" means a command published now has a listener.
   */
  async agentOnline(agent: string): Promise<boolean> {
    const broker = this.broker as (Aedes & { persistence?: { createRetainedStream(pattern: string): AsyncIterable<{ payload: Buffer }> } }) | undefined;
    const stream = broker?.persistence?.createRetainedStream(`audit/${agent}/status`);
    if (stream === undefined) return false;
    for await (const packet of stream) {
      try {
        return (JSON.parse(packet.payload.toString('utf8')) as { state?: unknown }).state === 'online';
      } catch {
        return false;
      }
    }
    return false;
  }

  private async doClose(): Promise<void> {
    this.draining = true;
    const stopped = this.listeners?.close() ?? Promise.resolve();
    if (this.inflight > 0) await new Promise<void>((resolve) => (this.onIdle = resolve));
    // Let the PUBACKs written by the last callbacks leave before sockets are destroyed.
    await new Promise((resolve) => setImmediate(resolve));
    const broker = this.broker;
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    this.listeners?.dropConnections();
    await stopped;
  }
}
