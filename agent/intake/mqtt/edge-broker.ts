import { createServer, type Server, type Socket } from 'node:net';
import { createTlsListener, type TlsServerOptions } from '../../../common/tls-server.js';
import { hostPort } from '../../../common/host-port.js';
import type { Aedes, AuthenticateError, Client } from 'aedes';
import {
  boundedOfflineQueues,
  cappedHandle,
  forwardEventsBestEffort,
  incomingStoreOf,
  incomingWithoutPayload,
  MAX_QUEUED_BYTES,
  MAX_QUEUED_MESSAGES,
  maxPacketBytes,
  noPacketIdCache,
  logClientErrors,
} from '../../../common/mqtt-packet-cap.js';
import { expireSessions } from '../../../common/mqtt-session-expiry.js';
import { MqttConnectionCap } from '../../../common/mqtt-connection-cap.js';
import type { Logger } from 'pino';
import { isMeteorError, type Limits } from '../../../protocols/index.js';
import type { AgentBuffer } from '../../buffer/types.js';
import { AgentErrors } from '../../errors.js';
import { isLoopback, listen as listenOn, type ListenAddress } from '../../http-helpers.js';
import type { AgentMetrics } from '../../metrics.js';
import type { Intake } from '../types.js';
import { AppendAbortedError, durableAppend } from '../durable-append.js';
import { createIntakeMeter, type IntakeMeter } from '../intake-meter.js';
import { DeviceLogins, type DeviceIdentity, type DeviceLogin } from './device-logins.js';
import { decideEdgePublish, PublishRefused } from './edge-publish.js';

export interface EdgeBrokerOptions {
  /** `intake.mqtt.listen`; port 0 picks a free one. */
  listen: ListenAddress;
  /** `intake.mqtt.users`; empty: anonymous devices, allowed on a loopback address only. */
  users: readonly DeviceLogin[];
  limits: Limits;
  buffer: AgentBuffer;
  metrics?: AgentMetrics;
  logger?: Logger;
  /** Broker id (the agent id), shown in $SYS topics. */
  id?: string;
  /** MQTT over TLS on `listen` instead of plain MQTT (common/tls-server.ts). */
  tls?: TlsServerOptions;
  /** Device connections at once (`intake.mqtt.maxConnections`); more are refused and counted. Default 1024. */
  maxConnections?: number;
  /** `intake.mqtt.sessionExpiry`: ms a persistent session outlives its device's connection; unset, for good (aedes' own way). */
  sessionExpiryMs?: number;
}

const BAD_CREDENTIALS = 4;
const NOT_AUTHORIZED = 5;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/**
 * `intake.mqtt`: an embedded aedes broker (MQTT 3.1.1) on an edge box, so
 * local devices publish `audit/<device>/events` to the agent, which buffers
 * and forwards them under its own chain.
 *
 * The append happens inside `authorizePublish`, before the PUBACK: aedes sends
 * the QoS 1 PUBACK right after that hook calls back, before its `published`
 * hook (DESIGN §3.3), so calling back is the acknowledgement. While the
 * buffer is full the hook simply does not call back: aedes reads nothing more
 * from that device's socket, so the device is slowed (its in-flight window
 * fills), not dropped.
 */
/** What authorizePublish reads of a PUBLISH. */
interface EdgePacket {
  topic: string;
  payload: string | Buffer;
  retain: boolean;
  qos?: number;
  messageId?: number;
}

export class EdgeBrokerIntake implements Intake {
  readonly name = 'mqtt';
  private broker: Aedes | undefined;
  private server: Server | undefined;
  private bound: ListenAddress | undefined;
  private readonly logins: DeviceLogins;
  private readonly identities = new WeakMap<Client, DeviceIdentity>();
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly sockets = new Set<Socket>();
  private readonly abort = new AbortController();
  /** Per device: aborted when its connection closes, or the intake does; see goneSignal. */
  private readonly gone = new WeakMap<Client, AbortController>();
  /** The controllers of devices connected now, for the intake's close to abort. */
  private readonly live = new Set<AbortController>();
  private readonly meter: IntakeMeter;
  /** Per device: the QoS 2 publishes being buffered now, by message id, each settling with its answer. */
  private readonly qos2Pending = new WeakMap<Client, Map<number, Promise<Error | null>>>();
  private draining = false;
  private closed: Promise<void> | undefined;

  constructor(private readonly options: EdgeBrokerOptions) {
    this.logins = new DeviceLogins(options.users);
    // Refused logins and publishes, and failed appends: series at 0 from the start, so the first one is an increase.
    this.meter = createIntakeMeter(options.metrics, this.name, ['auth', 'refused', 'append']);
  }

  async start(): Promise<void> {
    const { listen } = this.options;
    if (!this.logins.enabled && !isLoopback(listen.host)) {
      throw AgentErrors.METEORZX_INSECURE_BIND(
        `refusing to start: intake.mqtt.listen binds ${listen.host}, a non-loopback address, with no intake.mqtt.users; add users or bind 127.0.0.1`,
        { userError: true },
      );
    }
    // Loaded here: an agent without intake.mqtt never pays for the broker.
    const { Aedes: AedesBroker } = await import('aedes');
    noPacketIdCache();
    const broker = await AedesBroker.createBroker({
      ...(this.options.id === undefined ? {} : { id: this.options.id }),
      // The default of 23 is MQTT 3.1's; 3.1.1 clients (mosquitto_pub, MQTT.js) send longer ids.
      maxClientsIdLength: 256,
      authenticate: (client, username, password, done) => this.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => done(null, this.mayHear(client, sub.topic) ? sub : null),
      // Checked again at delivery, as Mosquitto checks its ACL: a login that takes over another's session (same
      // client id, clean=false) must not be handed what was queued for that session's subscriptions.
      authorizeForward: (client, packet) => (this.mayHear(client, packet.topic) ? packet : null),
    });
    incomingWithoutPayload(broker);
    forwardEventsBestEffort(broker);
    const log = this.options.logger;
    const { sessionExpiryMs, metrics } = this.options;
    if (sessionExpiryMs !== undefined) {
      expireSessions(broker, {
        expiryMs: sessionExpiryMs,
        onExpire: (client) => {
          log?.debug({ client }, 'edge mqtt session expired');
          metrics?.mqttSessionsExpired.inc();
        },
        onError: (client, err) => log?.warn({ client, err: String(err) }, 'edge mqtt session expiry failed'),
      });
    }
    boundedOfflineQueues(broker, MAX_QUEUED_MESSAGES, MAX_QUEUED_BYTES, (client) =>
      log?.warn({ client, maxMessages: MAX_QUEUED_MESSAGES, maxBytes: MAX_QUEUED_BYTES }, 'edge mqtt session queue full while its device is away: dropping messages for it'),
    );
    logClientErrors(broker, log, 'edge mqtt');
    broker.on('connectionError', (_client: Client, err: Error) => log?.debug({ err: err.message }, 'edge mqtt connection error'));
    this.broker = broker;
    const handle = cappedHandle<Socket>(broker, maxPacketBytes(this.options.limits.maxBodyBytes), (client, err) =>
      log?.warn({ client: client.id, err: err.message }, 'edge mqtt packet too large'),
    );
    const track = (socket: Socket): void => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    };
    // A connection that never sends CONNECT gives way to a newcomer at the bound: with Node's maxConnections,
    // a flood of those kept every device out until aedes' 30 s connect timeout, for good while it reopened them.
    const cap = new MqttConnectionCap({
      max: this.options.maxConnections ?? 1024,
      configKey: 'intake.mqtt.maxConnections',
      metric: 'meteorzx_agent_intake_dropped_total',
      onRefused: () => this.meter.dropped('connection-refused'),
      logger: this.options.logger,
    });
    broker.on('client', (client: Client) => cap.connected(client.conn));
    const onConnection = (socket: Socket): void => {
      track(socket);
      cap.handled(socket, socket);
      handle(socket);
    };
    // A TLS listener hands over a connection once its handshake is done (and, with requestClientCert, verified);
    // one still in its handshake is tracked too, so that a stop does not wait for it.
    const server = this.options.tls === undefined ? createServer(onConnection) : createTlsListener(this.options.tls, onConnection, track);
    server.on('connection', (raw: Socket) => cap.admit(raw));
    try {
      this.bound = await listenOn(server, listen, 'intake.mqtt.listen');
      this.server = server;
    } catch (err) {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      this.broker = undefined;
      throw err;
    }
  }

  /** A device with a login hears only its own command and status topics; anonymous (loopback) hears anything. */
  private mayHear(client: Client, topic: string): boolean {
    const own = this.identities.get(client)?.source;
    return own === undefined || topic === `audit/${own}/cmd` || topic === `audit/${own}/status`;
  }

  /** The bound address (the real port when configured with port 0). */
  address(): ListenAddress {
    if (this.bound === undefined) throw new Error('EdgeBrokerIntake.address() before start()');
    return this.bound;
  }

  describe(): Record<string, unknown> {
    const tls = this.options.tls === undefined ? {} : { tls: this.options.tls.requestCert === true ? 'mutual' : 'server' };
    return { intake: this.name, listen: this.bound && hostPort(this.bound.host, this.bound.port), auth: this.logins.enabled ? 'users' : 'anonymous', ...tls };
  }

  /**
   * Drains: no new connections or publishes, publishes already appending
   * finish and get their PUBACK; those still waiting for buffer space are
   * refused (the device resends to the restarted agent). Idempotent.
   */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.draining = true;
    const server = this.server;
    const stopped = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    this.abort.abort();
    for (const controller of this.live) controller.abort();
    await Promise.allSettled([...this.inflight]);
    // Let the PUBACKs written by the last callbacks leave before the sockets go.
    await new Promise((resolve) => setImmediate(resolve));
    const broker = this.broker;
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await stopped;
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (err: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    this.logins.authenticate(username, password).then(
      (identity) => {
        if (identity === undefined) {
          this.meter.error('auth');
          this.options.logger?.warn({ client: client.id, username }, 'edge mqtt login refused');
          done(authError('bad user name or password', BAD_CREDENTIALS), false);
          return;
        }
        this.identities.set(client, identity);
        done(null, true);
      },
      (err: unknown) => done(authError(`authentication error: ${String(err)}`, NOT_AUTHORIZED), false),
    );
  }

  private authorizePublish(client: Client | null, packet: EdgePacket, done: (err?: Error | null) => void): void {
    // The broker's own publishes (wills of vanished devices) carry no events.
    if (client === null) return done(null);
    if (this.draining) return done(new Error('agent is shutting down'));
    const identity = this.identities.get(client);
    if (identity === undefined) return done(new Error('not authenticated'));
    // aedes' store of QoS 2 publishes awaiting their PUBREL (the ids only: incomingWithoutPayload).
    const store = incomingStoreOf(this.broker);
    if (packet.qos === 2 && packet.messageId !== undefined && store !== undefined) {
      const messageId = packet.messageId;
      let pending = this.qos2Pending.get(client);
      const first = pending?.get(messageId);
      if (first !== undefined) {
        // Resent (DUP) while its first copy is still being buffered (a full buffer holds it): answered with that copy.
        void first.then((err) => done(err));
        return;
      }
      if (pending === undefined) this.qos2Pending.set(client, (pending = new Map()));
      const answers = pending;
      let settle: (err: Error | null) => void = () => undefined;
      answers.set(messageId, new Promise((resolve) => (settle = resolve)));
      const reply = (err?: Error | null): void => {
        done(err);
        settle(err ?? null);
        // Kept until aedes has stored the id (it does so after `done`): a copy arriving meanwhile finds one or the other.
        setImmediate(() => answers.delete(messageId));
      };
      // A QoS 2 publish resent (DUP) before its PUBREL: buffered when it first came; aedes answers PUBREC again.
      store.incomingGetPacket(client, { messageId }).then(
        () => reply(null),
        () => this.buffer(client, identity, packet, reply),
      );
      return;
    }
    this.buffer(client, identity, packet, done);
  }

  /** Buffers the publish's events, then calls back: the acknowledgement (PUBACK, PUBREC). */
  private buffer(client: Client, identity: DeviceIdentity, packet: EdgePacket, done: (err?: Error | null) => void): void {
    const work = this.takePublish(identity, packet, this.goneSignal(client));
    this.inflight.add(work);
    work.then(
      () => {
        this.inflight.delete(work);
        done(null);
      },
      (err: unknown) => {
        this.inflight.delete(work);
        const refused = err instanceof PublishRefused;
        if (refused) this.meter.error('refused');
        // A device gone while its publish waited for space, or the agent stopping: the documented path (the device
        // resends after reconnecting), not an error of the agent's.
        const gone = (err as Error).cause instanceof AppendAbortedError;
        this.options.logger?.[refused ? 'warn' : gone ? 'info' : 'error'](
          { client: client.id, topic: packet.topic.slice(0, 200), err: (err as Error).message, code: isMeteorError(err) ? err.code : undefined },
          refused ? 'edge mqtt publish refused, closing connection' : 'edge mqtt publish not buffered, closing connection so the device retries',
        );
        done(err as Error);
      },
    );
  }

  /**
   * Ends when the device's connection closes, or the intake does. A publish
   * still waiting for buffer space then gives up: it can no longer be
   * acknowledged, and the device resends it after reconnecting. Held on,
   * every publish of a device that gave up or lost its link would keep its
   * payload in memory until the buffer had room again.
   */
  private goneSignal(client: Client): AbortSignal {
    let gone = this.gone.get(client);
    if (gone === undefined) {
      const controller = new AbortController();
      // One controller, not AbortSignal.any with the intake's signal: on Node 20 every any() leaves an entry
      // in its long-lived source for good, ≈60 B per device connection.
      if (this.abort.signal.aborted) controller.abort();
      this.live.add(controller);
      client.conn.once('close', () => {
        this.live.delete(controller);
        controller.abort();
      });
      this.gone.set(client, controller);
      gone = controller;
    }
    return gone.signal;
  }

  /** Resolves once the publish's events are durable (or it carries none); the PUBACK follows. */
  private async takePublish(identity: DeviceIdentity, packet: { topic: string; payload: string | Buffer; retain: boolean }, signal: AbortSignal): Promise<void> {
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const decision = decideEdgePublish(identity, packet.topic, payload, this.options.limits);
    if (decision.kind === 'pass') {
      if (decision.unretained) packet.retain = false;
      return;
    }
    // Events are buffered here, not kept by the broker: a retained event would pin its payload in memory.
    packet.retain = false;
    if (decision.invalid.length > 0) {
      this.meter.invalid(decision.invalid.length);
      this.options.logger?.debug({ topic: packet.topic.slice(0, 200), errors: decision.invalid.slice(0, 5) }, 'edge mqtt events invalid; buffered as intake errors');
    }
    let appended: number;
    try {
      appended = await durableAppend(decision.events, undefined, { buffer: this.options.buffer, intake: this.name, meter: this.meter, signal });
    } catch (err) {
      // Not acknowledged: the device still holds the message and resends it (QoS 1), so nothing is lost.
      if (err instanceof AppendAbortedError) {
        throw new Error(this.abort.signal.aborted ? 'agent is shutting down' : 'the device disconnected before its events were buffered', { cause: err });
      }
      throw err;
    }
    this.meter.eventsIn(appended);
  }
}

