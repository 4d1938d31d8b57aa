import type { Aedes, Client } from 'aedes';
import mqttPacket from 'mqtt-packet';

/**
 * Unless told otherwise, mqtt-packet — which aedes writes every packet
 * with — builds a 2-byte Buffer for each of the 65,536 packet ids at its
 * first write: 6 MB of heap and 65k objects that every mark-compact walks,
 * to save one small allocation per PUBACK. A broker of ours turns that off
 * before it starts. The setting is mqtt-packet's, for the whole process
 * (MQTT.js's `writeCache: false` turns off the same one).
 */
export function noPacketIdCache(): void {
  mqttPacket.writeToStream.cacheNumbers = false;
}

/**
 * The largest MQTT packet a broker of ours reads: a batch body at the
 * limit (maxBodyBytes) plus room for the fixed header, a topic and the
 * packet id. MQTT 3.1.1 allows 256 MiB per packet, and aedes buffers a
 * packet whole before anyone sees it, so without a cap one client could
 * make the broker hold 256 MiB — and a thousand clients, 256 GiB.
 */
export function maxPacketBytes(maxBodyBytes: number): number {
  return maxBodyBytes + 64 * 1024;
}

/** What a connection handler sees of aedes' client: its mqtt-packet parser (not part of aedes' typings). */
interface ParserInternals {
  packet: { cmd?: string; length: number };
  _parseLength(): boolean;
  _emitError(err: Error): void;
}

/**
 * Makes a connection handler that refuses any packet whose declared length
 * is over `maxBytes`, as soon as its fixed header has been read: the
 * parser reports an error, aedes closes the connection (MQTT 3.1.1 has no
 * way to refuse one packet and keep the connection), and at most the bytes
 * of that one socket read were ever buffered. `onOversize` hears of it
 * first (for a warning in the log).
 *
 * aedes 1.x exposes no packet size limit, so this wraps the `_parseLength`
 * step of the client's mqtt-packet parser; a test fails if a new aedes or
 * mqtt-packet changes those internals.
 */
export function cappedHandle<S>(
  broker: Aedes,
  maxBytes: number,
  onOversize?: (client: Client, err: Error) => void,
): (stream: S, req?: unknown) => Client {
  const handle = broker.handle as unknown as (stream: S, req?: unknown) => Client;
  return (stream, req) => {
    const client = handle(stream, req);
    const parser = (client as unknown as { _parser?: ParserInternals })._parser;
    if (parser === undefined || typeof parser._parseLength !== 'function') {
      throw new Error('aedes client has no mqtt-packet parser to cap: the packet size limit cannot be enforced with this aedes version');
    }
    const parseLength = parser._parseLength;
    parser._parseLength = function capped(this: ParserInternals): boolean {
      if (!parseLength.call(this)) return false;
      if (this.packet.length > maxBytes) {
        const err = new Error(`${this.packet.cmd ?? 'MQTT'} packet of ${this.packet.length} bytes is over the limit of ${maxBytes} bytes; closing the connection`);
        onOversize?.(client, err);
        this._emitError(err);
        return false;
      }
      return true;
    };
    return client;
  };
}

/** The part of aedes' persistence that holds QoS 2 publishes awaiting their PUBREL. */
export interface IncomingStore {
  incomingStorePacket(client: Client, packet: { payload?: unknown }): Promise<void>;
  /** Resolves when a publish with this message id awaits its PUBREL; rejects when none does. */
  incomingGetPacket(client: Client, packet: { messageId: number }): Promise<unknown>;
}

/** The broker's store of QoS 2 publishes awaiting their PUBREL, when it has one. */
export function incomingStoreOf(broker: Aedes | undefined): IncomingStore | undefined {
  return (broker as unknown as { persistence?: IncomingStore } | undefined)?.persistence;
}

const NO_PAYLOAD = Buffer.alloc(0);

/**
 * Makes the broker keep a QoS 2 publish that awaits its PUBREL without its
 * payload. aedes stores the packet from PUBREC to PUBREL only to know its
 * message id (a resent PUBLISH then gets a PUBREC, not a second delivery)
 * and never reads the payload back; kept, a client that withholds PUBREL
 * pins up to maxInflightInbound (1,000) payloads of up to maxBodyBytes
 * each, and with clean=false they outlive the connection. The broker's own
 * delivery to subscribers uses the packet it was handed, not the stored copy.
 */
export function incomingWithoutPayload(broker: Aedes): void {
  const persistence = (broker as unknown as { persistence?: Partial<IncomingStore> }).persistence;
  if (persistence === undefined || typeof persistence.incomingStorePacket !== 'function') {
    throw new Error('aedes broker has no incomingStorePacket to wrap: QoS 2 payloads cannot be kept out of its store with this aedes version');
  }
  const store = persistence.incomingStorePacket.bind(persistence);
  persistence.incomingStorePacket = (client, packet) => store(client, { ...packet, payload: NO_PAYLOAD });
}

/** aedes' clientError for a publish topic it refuses before authorizePublish: `+`, `#`, or empty. */
const REFUSED_TOPIC = /not allowed in PUBLISH$/;

/**
 * Logs the broker's client errors (`name`: "mqtt", "edge mqtt"). aedes refuses a wildcard or empty
 * publish topic before authorizePublish: that one is a refused publish like the others, a warning;
 * the rest are the clients' own business, debug.
 */
export function logClientErrors(broker: Aedes, log: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void } | undefined, name: string): void {
  broker.on('clientError', (client: Client, err: Error) => {
    if (REFUSED_TOPIC.test(err.message)) log?.warn({ client: client.id, err: err.message }, `${name} publish refused, closing connection`);
    else log?.debug({ client: client.id, err: err.message }, `${name} client error`);
  });
}

/** Mosquitto's default `max_queued_messages`: QoS 1/2 messages held for one client's session. */
export const MAX_QUEUED_MESSAGES = 1000;
/** The payload bytes held for one client's session (Mosquitto's `max_queued_bytes`, unbounded there by default). */
export const MAX_QUEUED_BYTES = 16 * 1024 * 1024;

/** The part of aedes' persistence that holds the QoS 1/2 messages owed to each client session. */
interface OutgoingStore {
  outgoingEnqueue(sub: { clientId: string }, packet: { payload?: unknown }): Promise<void>;
  outgoingEnqueueCombi(subs: { clientId: string }[], packet: { payload?: unknown }): Promise<void>;
  outgoingClearMessageId(client: { id: string; clean?: boolean }, packet: object): Promise<{ payload?: unknown } | undefined>;
}

const payloadBytes = (packet: { payload?: unknown } | undefined): number => {
  const payload = packet?.payload;
  return typeof payload === 'string' ? Buffer.byteLength(payload) : Buffer.isBuffer(payload) ? payload.byteLength : 0;
};

/**
 * Bounds what the broker holds for a client that is not connected. aedes
 * queues every QoS 1/2 message matching a persistent session's (clean=false)
 * subscriptions, in memory and without limit, until that client comes back —
 * which it need never do: one `mosquitto_sub -c -q 1 -t 'audit/#'` left
 * behind made the gateway keep a copy of every event stored after it. As
 * Mosquitto does (`max_queued_messages`, default 1,000), a message for a
 * disconnected session whose queue holds `maxMessages`, or would pass
 * `maxBytes` with it (a first message is always kept), is dropped for it;
 * the publish itself is unaffected. `onDrop` hears of the first drop each
 * time a queue fills. Messages for a connected client are queued as before
 * (it acks them as they arrive).
 */
export function boundedOfflineQueues(broker: Aedes, maxMessages: number, maxBytes: number, onDrop?: (clientId: string) => void): void {
  const persistence = (broker as unknown as { persistence?: Partial<OutgoingStore> }).persistence;
  if (
    persistence === undefined ||
    typeof persistence.outgoingEnqueue !== 'function' ||
    typeof persistence.outgoingEnqueueCombi !== 'function' ||
    typeof persistence.outgoingClearMessageId !== 'function'
  ) {
    throw new Error('aedes broker has no outgoing queue to wrap: offline sessions cannot be bounded with this aedes version');
  }
  const clients = (broker as unknown as { clients?: Record<string, unknown> }).clients;
  if (clients === undefined) throw new Error('aedes broker has no client table: offline sessions cannot be told from connected ones with this aedes version');
  const store = persistence as OutgoingStore;
  const enqueue = store.outgoingEnqueue.bind(store);
  const enqueueCombi = store.outgoingEnqueueCombi.bind(store);
  const clear = store.outgoingClearMessageId.bind(store);
  /** Per client id: the messages and payload bytes queued, and whether a drop was reported since it last had room. */
  const queued = new Map<string, { messages: number; bytes: number; dropping: boolean }>();
  const admit = (subs: { clientId: string }[], bytes: number): { clientId: string }[] =>
    subs.filter(({ clientId }) => {
      const queue = queued.get(clientId) ?? { messages: 0, bytes: 0, dropping: false };
      if (clients[clientId] === undefined && (queue.messages >= maxMessages || (queue.messages > 0 && queue.bytes + bytes > maxBytes))) {
        if (!queue.dropping) onDrop?.(clientId);
        queue.dropping = true;
        return false;
      }
      queue.messages += 1;
      queue.bytes += bytes;
      queued.set(clientId, queue);
      return true;
    });
  store.outgoingEnqueue = (sub, packet) => (admit([sub], payloadBytes(packet)).length === 0 ? Promise.resolve() : enqueue(sub, packet));
  store.outgoingEnqueueCombi = (subs, packet) => {
    const kept = admit(subs, payloadBytes(packet));
    return kept.length === 0 ? Promise.resolve() : enqueueCombi(kept, packet);
  };
  store.outgoingClearMessageId = async (client, packet) => {
    // A clean session has nothing queued here (aedes writes its QoS 1/2 messages straight to the socket), yet aedes
    // clears on every PUBACK and PUBCOMP, and the memory store makes an empty queue for a client id it is asked about
    // and keeps it for good: one per clean client id that ever acknowledged a message (or sent a PUBACK at all).
    if (client.clean === true && !queued.has(client.id)) return undefined;
    const removed = await clear(client, packet);
    const queue = queued.get(client.id);
    if (removed !== undefined && removed !== null && queue !== undefined) {
      queue.messages -= 1;
      queue.bytes = Math.max(0, queue.bytes - payloadBytes(removed));
      queue.dropping = false;
      if (queue.messages <= 0) queued.delete(client.id);
    }
    return removed;
  };
}

type PublishFn = (packet: { topic: string }, client?: unknown, done?: (err?: Error | null) => void) => void;

/** An events topic (`audit/<source>/events`): the only publishes a broker of ours forwards best effort. */
function isEventsTopic(topic: string): boolean {
  return topic.startsWith('audit/') && topic.endsWith('/events');
}

/**
 * Makes the broker forward event publishes to subscribers best effort, as
 * Mosquitto does, instead of aedes' way: it waits for every matching
 * subscriber's socket to take the message (up to its drainTimeout, 60 s)
 * before it reads the publisher's next packet. One subscriber to `#` that
 * stopped reading (`mosquitto_sub -t '#' | less`, paused) thus held every
 * device's events: one publish per device per minute. Now the publisher
 * goes on at once, and a subscriber whose socket is backed up (Node's
 * writableNeedDrain) misses the events published meanwhile — at most one
 * message beyond its socket buffer is held for it. Events are stored before
 * this point; what a subscriber hears is a courtesy. Other publishes
 * (status, commands) keep aedes' flow control.
 */
export function forwardEventsBestEffort(broker: Aedes): void {
  const publish = broker.publish.bind(broker) as PublishFn;
  (broker as unknown as { publish: PublishFn }).publish = (packet, client, done) => {
    if (typeof client === 'function' || !isEventsTopic(packet.topic)) {
      publish(packet, client, done);
      return;
    }
    publish(packet, client, () => undefined);
    if (done !== undefined) process.nextTick(done, null);
  };
  const authorizeForward = broker.authorizeForward;
  broker.authorizeForward = (client, packet) => {
    const backedUp = isEventsTopic(packet.topic) && (client.conn as { writableNeedDrain?: boolean } | undefined)?.writableNeedDrain === true;
    return backedUp ? null : authorizeForward.call(broker, client, packet);
  };
}
