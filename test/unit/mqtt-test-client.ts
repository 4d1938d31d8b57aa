import { QUEUED_CLIENT_IDS } from '../../common/mqtt-session-expiry.js';
import { createRequire } from 'node:module';
import { connect as connectTcp, type Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { expect } from 'vitest';

/** Connects an MQTT 3.1.1 client (no reconnects) and registers its close with `closers`. */
export async function connectClient(closers: (() => Promise<unknown>)[], port: number, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, protocolVersion: 4, ...opts });
  closers.push(() => client.endAsync(true));
  return client;
}

/** Resolves with 'closed' when the broker drops the connection before acking. */
export function publishOrClose(client: MqttClient, topic: string, payload: string, opts: { retain?: boolean } = {}): Promise<'acked' | 'closed'> {
  return new Promise((resolve) => {
    client.once('close', () => resolve('closed'));
    client.publish(topic, payload, { qos: 1, ...opts }, (err) => resolve(err ? 'closed' : 'acked'));
  });
}

/**
 * How many packet-id Buffers mqtt-packet has cached: 65,536 once anything wrote
 * a packet with its default (cacheNumbers), 0 while a broker of ours has it off.
 */
export function packetIdCacheSize(): number {
  const numbers = createRequire(createRequire(import.meta.url).resolve('aedes'))('mqtt-packet/numbers.js') as { cache: Record<number, Buffer> };
  return Object.keys(numbers.cache).length;
}

/** What an aedes broker keeps of a QoS 2 publish until its PUBREL. */
export interface IncomingStore {
  incomingGetPacket(client: { id: string }, packet: { messageId: number }): Promise<{ payload: Buffer }>;
}

/** The incoming store of the aedes broker an ingress (gateway) or intake (agent edge) keeps as `broker`. */
export function incomingStoreOf(owner: unknown): IncomingStore {
  return (owner as { broker: { persistence: IncomingStore } }).broker.persistence;
}

/**
 * A QoS 2 publish of `payload` on `topic` over a raw socket (a client library always sends the PUBREL), with
 * clean=false (the session, and what waits in it, outlives the connection). Runs `atPubrec` once the PUBREC is
 * in, and answers how many payload bytes `store` then holds for the message; before answering, checks the
 * handshake still works: a resent PUBLISH gets its PUBREC again, the PUBREL its PUBCOMP, and the store lets the
 * message go.
 */
export async function heldQos2PayloadBytes(closers: (() => Promise<unknown>)[], port: number, topic: string, payload: Buffer, store: IncomingStore, atPubrec: () => void): Promise<number> {
  const sock: Socket = connectTcp(port, '127.0.0.1');
  closers.push(async () => sock.destroy());
  const received: number[] = [];
  sock.on('data', (d: Buffer) => {
    for (let i = 0; i < d.length; i += 1 + 1 + (d[i + 1] as number)) received.push((d[i] as number) >> 4);
  });
  const waitFor = async (type: number, count: number): Promise<void> => {
    for (let t = 0; t < 200 && received.filter((r) => r === type).length < count; t += 1) await new Promise((r) => setTimeout(r, 10));
    expect(received.filter((r) => r === type)).toHaveLength(count);
  };
  const clientId = `q2-hold-${port}`;
  sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId, keepalive: 60 }));
  const publish = mqttPacket.generate({ cmd: 'publish', qos: 2, dup: false, retain: false, messageId: 7, topic, payload });
  sock.write(publish);
  await waitFor(5, 1); // PUBREC
  atPubrec();
  const held = (await store.incomingGetPacket({ id: clientId }, { messageId: 7 })).payload.length;
  sock.write(publish);
  await waitFor(5, 2);
  sock.write(mqttPacket.generate({ cmd: 'pubrel', messageId: 7 }));
  await waitFor(7, 1); // PUBCOMP
  await expect(store.incomingGetPacket({ id: clientId }, { messageId: 7 })).rejects.toThrow();
  return held;
}

/** How many QoS 1/2 messages the aedes broker an ingress or intake keeps as `broker` holds for the session `clientId`. */
export async function queuedFor(owner: unknown, clientId: string): Promise<number> {
  const persistence = (owner as { broker: { persistence: { outgoingStream(client: { id: string }): AsyncIterable<unknown> } } }).broker.persistence;
  let n = 0;
  for await (const packet of persistence.outgoingStream({ id: clientId })) if (packet !== undefined) n += 1;
  return n;
}

/**
 * A persistent session (clean=false) subscribed to `filter` at QoS 1 whose client then goes away; `publish` runs
 * meanwhile. Answers how many messages the broker then holds for it, and how many a reconnect of the session
 * delivers (all it held, then whatever more comes within 100 ms).
 */
export async function offlineSessionBacklog(
  closers: (() => Promise<unknown>)[],
  port: number,
  owner: unknown,
  filter: string,
  publish: () => Promise<void>,
): Promise<{ held: number; delivered: number }> {
  const clientId = `away-${port}`;
  const away = await connectClient(closers, port, { clientId, clean: false });
  await away.subscribeAsync(filter, { qos: 1 });
  await away.endAsync(true);
  await publish();
  const held = await queuedFor(owner, clientId);
  let delivered = 0;
  const back = await connectClient(closers, port, { clientId, clean: false });
  back.on('message', () => (delivered += 1));
  for (let t = 0; t < 1000 && delivered < held; t += 1) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 100));
  return { held, delivered };
}

/**
 * A subscriber to `#` that stops reading its socket once subscribed (a `mosquitto_sub -t '#' | less` left
 * paused); destroyed by `closers`.
 */
export async function stalledSubscriber(closers: (() => Promise<unknown>)[], port: number): Promise<void> {
  const sock: Socket = connectTcp(port, '127.0.0.1');
  closers.push(async () => sock.destroy());
  sock.on('error', () => undefined);
  sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `stalled-${port}`, keepalive: 0 }));
  // CONNACK (4 bytes), then SUBSCRIBE; the SUBACK (5 bytes) is the last thing read.
  let read = 0;
  await new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      const before = read;
      read += d.length;
      if (before < 4 && read >= 4) sock.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 0 }] }));
      if (read >= 9) {
        sock.off('data', onData);
        sock.pause();
        resolve();
      }
    };
    sock.on('data', onData);
  });
}

/**
 * Publishes `n` events of about `bytes` each on `topic` at QoS 1, all at once (as `mosquitto_pub -l` keeps 20 in
 * flight, so that one socket read holds several); answers how many were acked within `ms` (all of them, unless
 * the broker stops reading the publisher).
 */
export async function ackedWithin(client: MqttClient, topic: string, n: number, bytes: number, ms: number): Promise<number> {
  let acked = 0;
  const all = Promise.all(
    Array.from({ length: n }, (_, i) =>
      client.publishAsync(topic, JSON.stringify({ id: `fwd-${i}`, type: 't', data: { pad: 'x'.repeat(bytes) } }), { qos: 1 }).then(() => (acked += 1)),
    ),
  );
  await Promise.race([all, new Promise((r) => setTimeout(r, ms))]);
  return acked;
}

/**
 * `owner` (a login, e.g. `{ username, password }`) subscribes to `topic` at QoS 1 in a persistent session with
 * client id `clientId` and goes away; `publish` runs; then `taker` connects with that same client id (taking
 * the session over). Answers the topics of what the taker is handed (all that arrives within 300 ms).
 */
export async function handedOnTakeover(
  closers: (() => Promise<unknown>)[],
  port: number,
  owner: mqtt.IClientOptions,
  topic: string,
  publish: () => Promise<void>,
  taker: mqtt.IClientOptions,
): Promise<string[]> {
  const clientId = `taken-${port}`;
  const first = await connectClient(closers, port, { ...owner, clientId, clean: false });
  await first.subscribeAsync(topic, { qos: 1 });
  await first.endAsync(true);
  await publish();
  const handed: string[] = [];
  const second = await connectClient(closers, port, { ...taker, clientId, clean: false });
  second.on('message', (t) => handed.push(t));
  await new Promise((r) => setTimeout(r, 300));
  return handed;
}

/** The client ids the broker of `owner` (a gateway ingress or an edge broker) holds an outgoing queue for. */
export function queuedClientIds(owner: unknown): string[] {
  const persistence = (owner as { broker: { persistence: Record<string, unknown> } }).broker.persistence;
  return (persistence[QUEUED_CLIENT_IDS] as () => string[])();
}

/** A clean session over a raw socket that sends a PUBACK for a message it never got, then leaves. */
export async function strayPuback(port: number, clientId: string): Promise<void> {
  const sock: Socket = connectTcp(port, '127.0.0.1');
  sock.on('error', () => undefined);
  const answered = new Promise<void>((resolve) => {
    let bytes = 0;
    // CONNACK (4 bytes), then PINGRESP (2 bytes): the PINGREQ after the PUBACK is answered once the PUBACK was handled.
    sock.on('data', (d: Buffer) => {
      bytes += d.length;
      if (bytes >= 6) resolve();
    });
  });
  sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 60 }));
  sock.write(mqttPacket.generate({ cmd: 'puback', messageId: 1 }));
  sock.write(mqttPacket.generate({ cmd: 'pingreq' }));
  await answered;
  sock.destroy();
}
