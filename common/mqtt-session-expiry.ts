import { Readable } from 'node:stream';
import type { Aedes, Client } from 'aedes';

/** A QoS 1/2 message owed to a session: the fields the queue matches on. */
interface Queued {
  brokerId?: string;
  brokerCounter?: number;
  messageId?: number;
}

/** The part of aedes' persistence that makes up a session, as aedes (and `expireSessions`) call it. */
interface SessionStore {
  cleanSubscriptions(client: { id: string }): Promise<unknown>;
  cleanIncoming?: (client: { id: string }) => Promise<unknown>;
  outgoingEnqueue(sub: { clientId: string }, packet: object): Promise<void>;
  outgoingEnqueueCombi(subs: { clientId: string }[], packet: object): Promise<void>;
  outgoingUpdate(client: { id: string }, packet: Queued): Promise<void>;
  outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<Queued | undefined>;
  outgoingStream(client: { id: string }): Readable;
}

function sessionStoreOf(broker: Aedes): SessionStore {
  const persistence = (broker as unknown as { persistence?: Partial<SessionStore> }).persistence;
  for (const name of ['cleanSubscriptions', 'outgoingEnqueue', 'outgoingEnqueueCombi', 'outgoingUpdate', 'outgoingClearMessageId', 'outgoingStream'] as const) {
    if (typeof persistence?.[name] !== 'function') throw new Error(`aedes broker has no ${name}: sessions cannot be expired with this aedes version`);
  }
  return persistence as SessionStore;
}

/**
 * Replaces the outgoing queues of aedes' memory store with ones that
 * forget a client id once its queue is empty. The memory store keeps an
 * array for every client id it ever queued for (or was asked about), and
 * has no call that removes one: an expired session would leave its empty
 * queue behind for good. Same semantics otherwise (aedes-persistence's
 * asyncPersistence.js): a copy per session, matched on broker id and
 * counter, then on message id.
 */
function forgetfulQueues(store: SessionStore): void {
  const queues = new Map<string, Queued[]>();
  const enqueue = (clientId: string, packet: object): void => {
    // A copy per session: aedes writes each session's message id into it.
    const copy: Queued = { ...packet, messageId: undefined };
    const queue = queues.get(clientId);
    if (queue === undefined) queues.set(clientId, [copy]);
    else queue.push(copy);
  };
  store.outgoingEnqueue = async (sub, packet) => enqueue(sub.clientId, packet);
  store.outgoingEnqueueCombi = async (subs, packet) => {
    for (const sub of subs) enqueue(sub.clientId, packet);
  };
  store.outgoingUpdate = async (client, packet) => {
    const queue = queues.get(client.id) ?? [];
    for (let i = 0; i < queue.length; i++) {
      const queued = queue[i] as Queued;
      if (queued.brokerId === packet.brokerId) {
        if (queued.brokerCounter === packet.brokerCounter) {
          queued.messageId = packet.messageId;
          return;
        }
      } else if (queued.messageId === packet.messageId) {
        queue[i] = packet;
        return;
      }
    }
    throw new Error('no such packet');
  };
  store.outgoingClearMessageId = async (client, packet) => {
    const queue = queues.get(client.id);
    const i = queue?.findIndex((queued) => queued.messageId === packet.messageId) ?? -1;
    if (queue === undefined || i < 0) return undefined;
    const [removed] = queue.splice(i, 1);
    if (queue.length === 0) queues.delete(client.id);
    return removed;
  };
  // A copy, as the memory store gives: aedes clears entries while it reads the stream.
  store.outgoingStream = (client) => Readable.from([...(queues.get(client.id) ?? [])]);
  // The client ids that have a queue: what a test (and a heap snapshot's reader) checks is left behind.
  Object.defineProperty(store, QUEUED_CLIENT_IDS, { value: (): string[] => [...queues.keys()] });
}

/** The store's method listing the client ids with a queue (see forgetfulQueues). */
export const QUEUED_CLIENT_IDS = 'queuedClientIds';

export interface SessionExpiryOptions {
  /** ms a persistent session (clean=false) is kept after its client disconnected. */
  expiryMs: number;
  /** Hears each expired session's client id (a metric, a log line). */
  onExpire?: (clientId: string) => void;
  /** Hears a session the store failed to end (it is not tried again: its client id connecting clean=true ends it). */
  onError?: (clientId: string, err: unknown) => void;
  /** The clock, ms (tests). */
  now?: () => number;
}

/**
 * Ends persistent sessions (clean=false) whose client has been away longer
 * than `expiryMs`: their subscriptions, the QoS 1/2 messages queued for
 * them and their unfinished QoS 2 receipts leave the broker's store, and a
 * reconnect with that client id gets session-present 0 — Mosquitto's
 * `persistent_client_expiration`, EMQX's session expiry. aedes 1.x keeps a
 * session until its client id connects again with clean=true, which a
 * device whose id changed never does.
 *
 * Call before anything else wraps the broker's outgoing queue (boundedOfflineQueues):
 * this replaces it, and the wrappers must sit on top. Stops with the broker.
 */
export function expireSessions(broker: Aedes, options: SessionExpiryOptions): void {
  const store = sessionStoreOf(broker);
  forgetfulQueues(store);
  const clients = (broker as unknown as { clients: Record<string, Client | undefined> }).clients;
  const now = options.now ?? Date.now;
  /** Client id → when its persistent session's client left, oldest first (a Map keeps insertion order). */
  const away = new Map<string, number>();
  broker.on('client', (client: Client) => away.delete(client.id));
  broker.on('clientDisconnect', (client: Client) => {
    if (client.clean !== false) return;
    away.delete(client.id);
    away.set(client.id, now());
  });
  const expire = async (id: string): Promise<void> => {
    const who = { id };
    // Subscriptions first: once they are gone nothing more is queued for the session.
    await store.cleanSubscriptions(who);
    await store.cleanIncoming?.(who);
    const queued: Queued[] = [];
    for await (const packet of store.outgoingStream(who)) queued.push(packet as Queued);
    // Through the store's own call, so the wrappers on top (the offline queue bound) count them out.
    for (const packet of queued) await store.outgoingClearMessageId(who, packet);
    options.onExpire?.(id);
  };
  const sweep = (): void => {
    const cutoff = now() - options.expiryMs;
    for (const [id, since] of away) {
      if (since > cutoff) break;
      away.delete(id);
      // Back meanwhile (a takeover emits its predecessor's disconnect before its own connect): not away.
      if (clients[id] !== undefined) continue;
      expire(id).catch((err: unknown) => options.onError?.(id, err));
    }
  };
  // Expired within a quarter of the expiry (at most a minute) of their time.
  const timer = setInterval(sweep, Math.min(60_000, Math.max(100, Math.floor(options.expiryMs / 4))));
  timer.unref();
  broker.once('closed', () => clearInterval(timer));
}
