import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { StoredLine } from '../buffer/types.js';
import { TOPIC_ROOT } from '../../protocols/index.js';
import { jsonArrayOf } from '../buffer/event-line.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { redactUrl } from '../../common/url-credentials.js';
import type { PushTransport, SendOutcome } from './types.js';

export interface MqttTransportOptions {
  /** Broker URL: mqtt://, mqtts://, ws://, wss://. */
  url: string;
  /** Agent id: topics are <topicPrefix>/<id>/events and <topicPrefix>/<id>/status. */
  id: string;
  epoch?: string;
  /** Default `audit`. */
  topicPrefix?: string;
  /** Default `meteorzx-agent-<id>`. */
  clientId?: string;
  username?: string;
  password?: string;
  /** PEM of a private CA for mqtts/wss. */
  ca?: string | Buffer;
  /** PEM client certificate and key, for a broker that asks for one (mutual TLS). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Longest wait for one PUBACK, ms; past it the connection is dropped and everything unacked is resent. */
  timeoutMs?: number;
  /** Unacknowledged QoS 1 publishes (one batch each) at once. */
  maxInFlight?: number;
  connectTimeoutMs?: number;
  keepaliveSeconds?: number;
  /**
   * Backoff of the command link's reconnects (onCommand), the push link's own (push.backoff). Default
   * 100 ms to 30 s. A link counts as healthy, and the backoff starts over, once it stayed up maxMs.
   */
  reconnect?: BackoffOptions;
}

/** Longest close() waits for the "offline" status's PUBACK, and then for the disconnect, ms. */
const CLOSE_WAIT_MS = 5_000;

/** Least time between two retained statuses that only say `delivered` moved, ms: one small publish a second at most. */
const PROGRESS_EVERY_MS = 1_000;

/**
 * Pushes batches as QoS 1 JSON-array publishes on audit/<id>/events; the
 * PUBACK is the ack. Our LevelDB buffer is the queue, not MQTT.js's store:
 * the session is clean (`clean: true`) and MQTT.js never reconnects by itself
 * (`reconnectPeriod: 0`). When the link drops, every unacked publish fails,
 * the client is thrown away, and the sender reconnects on its own backoff
 * and resends from the delivered cursor with a fresh client — packet ids of
 * an old session can then never be confused with new ones.
 */
export class MqttTransport implements PushTransport {
  readonly name = 'mqtt';
  readonly maxInFlight: number;
  private client: MqttClient | undefined;
  private connecting: Promise<MqttClient> | undefined;
  /** Publishes awaiting their PUBACK: how to fail each (`unanswered` when the broker closed the link meanwhile), by the client it went on. */
  private readonly pending = new Map<(error: string, unanswered?: boolean) => void, MqttClient>();
  /** Links this transport dropped itself (a PUBACK timeout): their close is not the broker's doing. */
  private readonly droppedByUs = new WeakSet<MqttClient>();
  private closed: Promise<void> | undefined;
  private readonly eventsTopic: string;
  private readonly statusTopic: string;
  private readonly cmdTopic: string;
  private commandListener: ((payload: Buffer) => void) | undefined;
  private linkUpListener: (() => void) | undefined;
  /** The command link's next reconnect attempt, when one is scheduled. */
  private relink: NodeJS.Timeout | undefined;
  private readonly relinkBackoff: Backoff;
  private readonly relinkOptions: BackoffOptions;
  /** Clock ms when the last link came up. */
  private upSince = 0;
  /** Announced in the retained status; see epochChanged. */
  private epoch: string | undefined;
  /** The delivered cursor, announced in the retained status (see progress). */
  private delivered: number | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private lastStatusAt = 0;

  constructor(private readonly options: MqttTransportOptions) {
    this.epoch = options.epoch;
    this.maxInFlight = options.maxInFlight ?? 4;
    const prefix = options.topicPrefix ?? TOPIC_ROOT;
    this.eventsTopic = `${prefix}/${options.id}/events`;
    this.statusTopic = `${prefix}/${options.id}/status`;
    this.cmdTopic = `${prefix}/${options.id}/cmd`;
    this.relinkOptions = { initialMs: 100, maxMs: 30_000, ...options.reconnect };
    this.relinkBackoff = new Backoff(this.relinkOptions);
  }

  async start(): Promise<void> {}

  /**
   * Republishes the retained "online" status with the new epoch. The last
   * will, fixed at connect, names the new epoch from the next connection on.
   */
  epochChanged(epoch: string): void {
    this.epoch = epoch;
    if (this.client?.connected) this.client.publish(this.statusTopic, this.statusPayload('online'), { qos: 1, retain: true });
  }

  /**
   * Says the new delivered cursor in the retained status, at most once per
   * PROGRESS_EVERY_MS (the last value of a burst goes at its end). The PUBACK
   * the cursor follows may come from a broker in front of the gateway (a
   * Mosquitto bridge), which can lose what it acked; the gateway compares
   * this `delivered` with what it stored and alerts on the missing tail
   * (gateway/alerts/tail-claims.ts), which it otherwise saw only when a later
   * event arrived.
   */
  progress(delivered: number): void {
    if (delivered === this.delivered) return;
    this.delivered = delivered;
    if (this.progressTimer !== undefined || this.closed !== undefined) return;
    const wait = this.lastStatusAt + PROGRESS_EVERY_MS - Date.now();
    if (wait <= 0) return this.announce();
    this.progressTimer = setTimeout(() => {
      this.progressTimer = undefined;
      this.announce();
    }, wait);
    this.progressTimer.unref();
  }

  private announce(): void {
    if (this.closed !== undefined || !this.client?.connected) return;
    this.lastStatusAt = Date.now();
    this.client.publish(this.statusTopic, this.statusPayload('online'), { qos: 1, retain: true });
  }

  /**
   * Takes commands from <prefix>/<id>/cmd (QoS 1): the gateway's on-demand
   * pull for an agent it cannot reach (NAT). Commands need a live link even
   * when nothing is pushed, so from here on the link is kept up: brought up
   * now, and again whenever it is lost or an attempt fails, each time after a
   * delay of the `reconnect` backoff — a broker that refuses or drops the
   * agent is not hammered at a fixed pace.
   */
  onCommand(listener: (payload: Buffer) => void): void {
    this.commandListener = listener;
    // A link the sender opened before this call was wired without commands.
    if (this.client?.connected) this.listenForCommands(this.client);
    else this.keepLink();
  }

  onLinkUp(listener: () => void): void {
    this.linkUpListener = listener;
  }

  /** One attempt to bring the command link up (joined with the sender's, if one is under way). */
  private keepLink(): void {
    this.relink = undefined;
    if (this.closed !== undefined || this.client?.connected) return;
    this.connect().catch(() => this.relinkLater());
  }

  /** Schedules the next attempt after one more failure's backoff (a refused connection, or a link lost). */
  private relinkLater(): void {
    if (this.closed !== undefined || this.commandListener === undefined || this.relink !== undefined) return;
    this.relink = setTimeout(() => this.keepLink(), this.relinkBackoff.next());
    this.relink.unref();
  }

  /** A link that was up closed: one that lasted starts the backoff over; one dropped at once counts as a failure. */
  private linkLost(): void {
    if (Date.now() - this.upSince >= this.relinkOptions.maxMs) this.relinkBackoff.reset();
    this.relinkLater();
  }

  async send(events: readonly StoredLine[]): Promise<SendOutcome> {
    if (this.closed !== undefined) return { kind: 'retry', error: 'transport closed' };
    let client: MqttClient;
    try {
      client = await this.connect();
    } catch (err) {
      return { kind: 'retry', error: `${redactUrl(this.options.url)}: ${(err as Error).message}` };
    }
    return new Promise<SendOutcome>((resolve) => {
      const fail = (error: string, unanswered = false) => {
        clearTimeout(timer);
        this.pending.delete(fail);
        resolve(unanswered ? { kind: 'retry', error, unanswered } : { kind: 'retry', error });
      };
      // A broker that stops acking is as good as gone: drop the link, so every unacked batch is resent on a fresh one.
      const timer = setTimeout(() => {
        // Unanswered: on a slow link a large publish may take longer than the timeout to go out at all.
        fail(`no PUBACK within ${this.options.timeoutMs ?? 30_000} ms`, true);
        this.droppedByUs.add(client);
        client.end(true);
      }, this.options.timeoutMs ?? 30_000);
      this.pending.set(fail, client);
      client.publish(this.eventsTopic, jsonArrayOf(events), { qos: 1 }, (err) => {
        if (!this.pending.delete(fail)) return; // already failed by a close or the timeout
        clearTimeout(timer);
        resolve(err ? { kind: 'retry', error: `publish: ${err.message}` } : { kind: 'acked', rejected: [] });
      });
    });
  }

  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  /**
   * Every wait here is bounded. The buffer is the queue: a batch still
   * unacked now is resent after a restart (the sender has already given its
   * sends closeTimeoutMs), so MQTT.js's store is not drained — `end()` would
   * wait for each outstanding PUBACK, and MQTT.js never calls back a QoS 1
   * publish whose link the peer closed.
   */
  private async shutdown(): Promise<void> {
    clearTimeout(this.relink);
    clearTimeout(this.progressTimer);
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.failAll('transport closed');
    if (client === undefined || !client.connected) {
      client?.end(true);
      return;
    }
    for (const id of Object.keys(client.outgoing)) client.removeOutgoingMessage(Number(id));
    const waitMs = Math.min(this.options.timeoutMs ?? 30_000, CLOSE_WAIT_MS);
    // A clean disconnect suppresses the will, so say "offline" ourselves. Unacked, drop the link
    // instead: the broker then publishes the will, which says "offline" too.
    const offline = client.publishAsync(this.statusTopic, this.statusPayload('offline'), { qos: 1, retain: true });
    if (await settlesWithin(client, offline, waitMs)) await settlesWithin(client, client.endAsync(), waitMs);
    if (!client.disconnected) client.end(true);
  }

  private statusPayload(state: 'online' | 'offline'): string {
    const progress = this.delivered === undefined ? {} : { delivered: this.delivered };
    return JSON.stringify({ state, id: this.options.id, ...(this.epoch ? { epoch: this.epoch } : {}), ...progress, at: new Date().toISOString() });
  }

  private connect(): Promise<MqttClient> {
    // A client being ended (a PUBACK timeout) may still say connected until its socket has closed.
    if (this.client?.connected && !this.client.disconnecting) return Promise.resolve(this.client);
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private open(): Promise<MqttClient> {
    const options: IClientOptions = {
      protocolVersion: 4,
      clean: true,
      // MQTT.js would otherwise have mqtt-packet build a 2-byte Buffer for each of the 65,536 packet
      // ids at the first publish: 6 MB of heap and 65k objects every mark-compact walks, to save
      // one small allocation per publish (tens per second here).
      writeCache: false,
      reconnectPeriod: 0,
      clientId: this.options.clientId ?? `meteorzx-agent-${this.options.id}`,
      connectTimeout: this.options.connectTimeoutMs ?? 10_000,
      keepalive: this.options.keepaliveSeconds ?? 30,
      will: { topic: this.statusTopic, payload: Buffer.from(this.statusPayload('offline')), qos: 1, retain: true },
      ...(this.options.username === undefined ? {} : { username: this.options.username }),
      ...(this.options.password === undefined ? {} : { password: this.options.password }),
      ...(this.options.ca === undefined ? {} : { ca: this.options.ca }),
      ...(this.options.cert === undefined || this.options.key === undefined ? {} : { cert: this.options.cert, key: this.options.key }),
    };
    return new Promise<MqttClient>((resolve, reject) => {
      const client = mqtt.connect(brokerUrl(this.options.url), options);
      let settled = false;
      client.on('connect', () => {
        settled = true;
        this.client = client;
        this.upSince = Date.now();
        // Subscribe before announcing "online": the broker handles one connection's packets in
        // order, so a gateway that sees us online knows a command now reaches us.
        if (this.commandListener !== undefined) this.listenForCommands(client);
        this.lastStatusAt = Date.now();
        client.publish(this.statusTopic, this.statusPayload('online'), { qos: 1, retain: true });
        resolve(client);
        this.linkUpListener?.();
      });
      client.on('error', (err) => {
        if (!settled) {
          settled = true;
          client.end(true);
          reject(err);
        }
      });
      client.on('close', () => {
        if (!settled) {
          settled = true;
          reject(new Error('connection closed before CONNACK'));
        }
        const wasUp = this.client === client;
        if (wasUp) this.client = undefined;
        // The broker closing the link under a publish may be its answer to that publish (too large).
        this.failAll('connection to the broker closed', !this.droppedByUs.has(client), client);
        if (wasUp) this.linkLost();
      });
    });
  }

  private listenForCommands(client: MqttClient): void {
    const listener = this.commandListener;
    if (listener === undefined) return;
    client.on('message', (topic, payload) => {
      if (topic === this.cmdTopic) listener(payload);
    });
    client.subscribe(this.cmdTopic, { qos: 1 });
  }

  /** Fails the publishes awaiting a PUBACK on `client` (a link that closed), or on every client. */
  private failAll(error: string, unanswered = false, client?: MqttClient): void {
    for (const [fail, on] of [...this.pending]) if (client === undefined || on === client) fail(error, unanswered);
  }
}

/**
 * The URL to connect to: a WebSocket URL that names no path gets `/mqtt`, the path of the gateway's
 * WebSocket listener (and of EMQX, HiveMQ, VerneMQ; Mosquitto takes any). MQTT.js asks for `/`, which
 * the gateway refuses, so `ws://gw:8083` (as the gateway's ready line names it) never connected.
 */
export function brokerUrl(url: string): string {
  return /^wss?:\/\/[^/?#]+$/i.test(url) ? `${url}/mqtt` : url;
}

/**
 * True when `p` resolves within `ms`; false when it rejects, the time passes,
 * or the client's link closes first (a QoS 1 callback MQTT.js then never makes).
 */
async function settlesWithin(client: MqttClient, p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  let onClose: (() => void) | undefined;
  const lost = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    onClose = () => resolve(false);
    client.once('close', onClose);
  });
  try {
    return await Promise.race([p.then(() => true, () => false), lost]);
  } finally {
    clearTimeout(timer);
    if (onClose) client.removeListener('close', onClose);
  }
}
