import type { Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import WebSocket from 'ws';
import pino from 'pino';
import {
  ackedWithin,
  connectClient,
  handedOnTakeover,
  heldQos2PayloadBytes,
  incomingStoreOf,
  offlineSessionBacklog,
  queuedClientIds,
  packetIdCacheSize,
  publishOrClose,
  stalledSubscriber,
  strayPuback,
} from './mqtt-test-client.js';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../protocols/index.js';
import { MAX_QUEUED_MESSAGES } from '../../common/mqtt-packet-cap.js';
import { MqttIngress } from '../../gateway/mqtt/broker.js';
import { MqttUsers, type MqttUserEntry } from '../../gateway/auth/mqtt-users.js';
import { GatewayErrors } from '../../gateway/errors.js';
import { FakeGatewayCore } from './gateway-ingress-fakes.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

async function startBroker(users: MqttUserEntry[] = []) {
  const core = new FakeGatewayCore();
  let clients = 0;
  const ingress = new MqttIngress({
    ingestor: core,
    users: new MqttUsers(users),
    limits: DEFAULT_LIMITS,
    listeners: { tcp: { host: '127.0.0.1', port: 0 } },
    logger: pino({ level: 'silent' }),
    maxWaitMs: 2000,
    onClientCount: (n) => (clients = n),
    // Session expiry on, as the config always has it (its queues replace the memory store's).
    sessionExpiryMs: 7_200_000,
  });
  const bound = await ingress.start();
  closers.push(() => ingress.close());
  const port = bound[0]?.port ?? 0;
  return { core, ingress, port, clientCount: () => clients };
}

function connect(port: number, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return connectClient(closers, port, opts);
}

describe('MQTT ingress', () => {
  it('stores events before the PUBACK, taking the source from the topic', async () => {
    const { core, port, clientCount } = await startBroker();
    const client = await connect(port, { clientId: 'device-with-a-client-id-longer-than-23' });
    expect(clientCount()).toBe(1);
    await client.publishAsync('audit/dev-1/events', JSON.stringify({ id: 'm1', type: 'door.open' }), { qos: 1 });
    // The PUBACK has arrived: the event must already be in storage.
    expect(core.events.map((e) => [e.id, e.source, e.ingest.method])).toEqual([['m1', 'dev-1', 'mqtt']]);
    expect(core.contexts[0]?.peer).toMatch(/^device-with-a-client-id-longer-than-23@127\.0\.0\.1:\d+$/);
    await client.publishAsync('audit/dev-1/events', JSON.stringify([{ id: 'm2', type: 't' }, { id: 'm3', type: 't' }]), { qos: 1 });
    expect(core.events).toHaveLength(3);
    // The broker wrote a CONNACK and two PUBACKs without building mqtt-packet's 6 MB id cache.
    expect(packetIdCacheSize()).toBe(0);
  });

  it('records an unreadable payload as a rejection and keeps the client connected', async () => {
    const { core, port } = await startBroker();
    const client = await connect(port);
    await client.publishAsync('audit/dev-1/events', '{"type": nope', { qos: 1 });
    await client.publishAsync('audit/dev-1/events', Buffer.from([0x7b, 0xff, 0x7d]), { qos: 1 });
    await client.publishAsync('audit/dev-1/events', JSON.stringify({ id: 'after', type: 't' }), { qos: 1 });
    expect(core.records.filter((r) => r.outcome === 'rejected').map((r) => r.reason)).toEqual([
      expect.stringMatching(/not valid JSON/),
      expect.stringMatching(/UTF-8/),
    ]);
    expect(core.events.map((e) => e.id)).toEqual(['after']);
    expect(client.connected).toBe(true);
  });

  it('closes the connection on a topic outside the layout, or with a wildcard', async () => {
    const { core, port } = await startBroker();
    expect(await publishOrClose(await connect(port), 'other/topic', '{"type":"t"}')).toBe('closed');
    expect(await publishOrClose(await connect(port), 'audit/+/events', '{"type":"t"}')).toBe('closed');
    expect(core.contexts).toHaveLength(0);
  });

  it('passes a Mosquitto bridge connection notification without storing or retaining it', async () => {
    const { core, ingress, port } = await startBroker([{ username: 'site-3', password: 'pw3', source: 'site-3' }]);
    const bridge = await connect(port, { username: 'site-3', password: 'pw3' });
    expect(await publishOrClose(bridge, '$SYS/broker/connection/vm.site3/state', '1', { retain: true })).toBe('acked');
    expect(bridge.connected).toBe(true);
    expect(core.contexts).toHaveLength(0);
    const persistence = (ingress as unknown as { broker: { persistence: { createRetainedStream(p: string): AsyncIterable<unknown> } } }).broker.persistence;
    const retained: unknown[] = [];
    for await (const packet of persistence.createRetainedStream('$SYS/broker/connection/vm.site3/state')) retained.push(packet);
    expect(retained).toEqual([]);
  });

  it('with users: refuses a wrong password and another source topic; relayFor limits named sources', async () => {
    const { core, port } = await startBroker([
      { username: 'edge-7', password: 'pw7', source: 'edge-7', relayFor: ['dev-*'] },
      { username: 'dev-1', password: 'pw1', source: 'dev-1' },
    ]);
    await expect(connect(port, { username: 'edge-7', password: 'bad' })).rejects.toThrow(/Bad username or password/i);
    await expect(connect(port)).rejects.toThrow(/Bad username or password/i);

    const edge = await connect(port, { username: 'edge-7', password: 'pw7' });
    const payload = [
      { id: 'r1', type: 't' },
      { id: 'r2', type: 't', source: 'dev-9' },
      { id: 'r3', type: 't', source: 'plc-1' },
    ];
    await edge.publishAsync('audit/edge-7/events', JSON.stringify(payload), { qos: 1 });
    expect(core.events.map((e) => [e.id, e.source])).toEqual([
      ['r1', 'edge-7'],
      ['r2', 'dev-9'],
    ]);
    expect(core.records.find((r) => r.outcome === 'rejected')?.reason).toMatch(/plc-1/);
    expect(await publishOrClose(edge, 'audit/dev-1/events', JSON.stringify({ id: 'x', type: 't' }))).toBe('closed');
    expect(core.events.map((e) => e.id)).not.toContain('x');

    const dev = await connect(port, { username: 'dev-1', password: 'pw1' });
    expect(await publishOrClose(dev, 'audit/dev-1/cmd', '{"op":"pull"}')).toBe('closed');
  });

  it('hands a login that takes over another login’s session (same client id) nothing queued for it', async () => {
    const { port } = await startBroker([
      { username: 'dev-1', password: 'pw1', source: 'dev-1' },
      { username: 'dev-2', password: 'pw2', source: 'dev-2' },
    ]);
    const dev1 = { username: 'dev-1', password: 'pw1' };
    const handed = await handedOnTakeover(closers, port, dev1, 'audit/dev-1/status', async () => {
      const device = await connect(port, dev1);
      for (let i = 0; i < 3; i++) await device.publishAsync('audit/dev-1/status', `{"state":"s${i}"}`, { qos: 1 });
    }, { username: 'dev-2', password: 'pw2' });
    // Before the fix: dev-2 was handed dev-1's three messages on a topic it may not subscribe to.
    expect(handed).toEqual([]);
  });

  it('waits out an overloaded pipeline, then acks', async () => {
    const { core, port } = await startBroker();
    core.failNext = { count: 3, error: () => GatewayErrors.METEORZX_GATEWAY_OVERLOADED('full') };
    const client = await connect(port);
    await client.publishAsync('audit/dev-1/events', JSON.stringify({ id: 'o1', type: 't' }), { qos: 1 });
    expect(core.events.map((e) => e.id)).toEqual(['o1']);
    expect(core.contexts.length).toBe(4);
  });

  it('stops retrying an overloaded publish once its client has disconnected', async () => {
    const { core, port } = await startBroker();
    core.failNext = { count: 1_000_000, error: () => GatewayErrors.METEORZX_GATEWAY_OVERLOADED('full') };
    const client = await connect(port, { reconnectPeriod: 0 });
    client.publish('audit/dev-1/events', JSON.stringify({ id: 'g1', type: 't' }), { qos: 1 }, () => undefined);
    await new Promise((r) => setTimeout(r, 100));
    client.stream.destroy();
    await new Promise((r) => setTimeout(r, 400));
    const attempts = core.contexts.length;
    await new Promise((r) => setTimeout(r, 700));
    // Before: retried with a doubling delay for maxWaitMs (2 s here) for a client that could no longer get its PUBACK.
    expect(core.contexts.length).toBe(attempts);
    expect(core.events).toHaveLength(0);
  });

  it('does not ack when the write fails: the connection closes so the client resends', async () => {
    const { core, port } = await startBroker();
    core.failNext = { count: 1, error: () => GatewayErrors.METEORZX_STORAGE_FAILED('disk full') };
    const client = await connect(port);
    expect(await publishOrClose(client, 'audit/dev-1/events', JSON.stringify({ id: 'f1', type: 't' }))).toBe('closed');
    expect(core.events).toHaveLength(0);
  });

  it('a QoS 2 publish waiting for its PUBREL holds its id, not its payload: a client that never sends PUBREL pins no event bodies', async () => {
    const { core, ingress, port } = await startBroker();
    const events = Array.from({ length: 5 }, (_, i) => ({ id: `q2-${i}`, type: 't', data: { pad: 'x'.repeat(50_000) } }));
    const payload = Buffer.from(JSON.stringify(events));
    const atPubrec = () => expect(core.events.map((e) => e.id)).toEqual(events.map((e) => e.id));
    // Before the fix: the whole 250 KB payload, kept until a PUBREL that need never come (up to 1,000 per client, each up to maxBodyBytes).
    expect(await heldQos2PayloadBytes(closers, port, 'audit/dev-1/events', payload, incomingStoreOf(ingress), atPubrec)).toBe(0);
    // The resent PUBLISH got its PUBREC again, and delivered nothing twice.
    expect(core.events).toHaveLength(5);
  });

  it('holds at most 1,000 messages for a persistent session whose client is away, as Mosquitto does', async () => {
    const { core, ingress, port } = await startBroker();
    const n = MAX_QUEUED_MESSAGES + 200;
    const backlog = await offlineSessionBacklog(closers, port, ingress, 'audit/+/events', async () => {
      const device = await connect(port);
      for (let i = 0; i < n; i++) await device.publishAsync('audit/dev-1/events', JSON.stringify({ id: `q-${i}`, type: 't' }), { qos: 1 });
    });
    // Every publish was stored and acked; before the fix the broker also kept all 1,200 for the absent subscriber
    // (one `mosquitto_sub -c -q 1 -t 'audit/#'` left behind: a copy of every event stored after it, in memory, for good).
    expect(core.events).toHaveLength(n);
    expect(backlog).toEqual({ held: MAX_QUEUED_MESSAGES, delivered: MAX_QUEUED_MESSAGES });
  });

  it('keeps no outgoing queue for a clean session: clients with new ids that acknowledge leave nothing behind', async () => {
    const { ingress, port } = await startBroker();
    const listener = await connect(port, { clientId: 'listener' });
    await listener.subscribeAsync('audit/+/events', { qos: 1 });
    const heard = new Promise((resolve) => listener.once('message', resolve));
    const device = await connect(port);
    await device.publishAsync('audit/dev-1/events', JSON.stringify({ id: 'h1', type: 't' }), { qos: 1 });
    await heard;
    // Its PUBACK went before this SUBSCRIBE, and is handled by the time the SUBACK is in.
    await listener.subscribeAsync('audit/dev-1/status', { qos: 1 });
    for (let i = 0; i < 20; i++) await strayPuback(port, `acker-${i}`);
    // Before: the memory store was asked to clear a message of each of these 21 client ids, and kept an empty
    // queue for each, for good (5,000 such clients added 5,000 queues to the gateway's heap).
    expect(queuedClientIds(ingress)).toEqual([]);
  });

  it('a subscriber that stops reading holds no publisher: events are forwarded best effort', async () => {
    const { core, port } = await startBroker();
    await stalledSubscriber(closers, port);
    const listener = await connect(port);
    const heard = new Set<string>();
    listener.on('message', (_topic, payload) => heard.add((JSON.parse(payload.toString()) as { id: string }).id));
    await listener.subscribeAsync('audit/+/events', { qos: 0 });
    const n = 600;
    const device = await connect(port);
    // 600 x 32 KB: far more than the stalled subscriber's socket buffers take. Before the fix aedes waited for its
    // socket to drain (up to 60 s) before reading the publisher's next packet: a few dozen acked, then none.
    expect(await ackedWithin(device, 'audit/dev-1/events', n, 32 * 1024, 10_000)).toBe(n);
    expect(core.events).toHaveLength(n);
    // A subscriber that reads still hears what is published (best effort: during the burst it may have missed some).
    const after = (k: number) => `after-burst-${k}`;
    let k = 0;
    for (; k < 100 && ![...heard].some((id) => id.startsWith('after-burst-')); k += 1) {
      await device.publishAsync('audit/dev-1/events', JSON.stringify({ id: after(k), type: 't' }), { qos: 1 });
      await new Promise((r) => setTimeout(r, 50));
    }
    expect([...heard].some((id) => id.startsWith('after-burst-'))).toBe(true);
  });

  it('over WebSocket, closes a connection whose message declares more than the packet limit, without buffering it', async () => {
    const core = new FakeGatewayCore();
    const limits = { ...DEFAULT_LIMITS, maxBodyBytes: 64 * 1024 };
    const ingress = new MqttIngress({ ingestor: core, users: new MqttUsers([]), limits, listeners: { ws: { host: '127.0.0.1', port: 0 } }, logger: pino({ level: 'silent' }) });
    const bound = await ingress.start();
    closers.push(() => ingress.close());
    const ws = new WebSocket(`ws://127.0.0.1:${bound[0]?.port ?? 0}/mqtt`, 'mqtt');
    closers.push(async () => ws.terminate());
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.on('error', () => undefined);
    // A binary frame (FIN, opcode 2) declaring 8 MiB, masked with a zero key, then 1 MiB of it: ws holds a message whole
    // before the MQTT parser (and its packet cap) sees a byte, up to its own default of 100 MiB.
    const sock = (ws as unknown as { _socket: Socket })._socket;
    const header = Buffer.alloc(14);
    header[0] = 0x82;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(8 * 1024 * 1024), 2);
    sock.write(Buffer.concat([header, Buffer.alloc(1024 * 1024, 0x61)]));
    const outcome = await Promise.race([closed, new Promise<string>((resolve) => setTimeout(() => resolve('still open'), 2000))]);
    // Before the fix: still open, buffering; now closed at once with 1009 (message too big).
    expect(outcome).toBe(1009);
    expect(core.contexts).toHaveLength(0);
  });

  it('close() drains: a publish already in the pipeline is acked, then clients are disconnected', async () => {
    const { core, ingress, port } = await startBroker();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const original = core.ingest.bind(core);
    core.ingest = async (items, ctx) => {
      await gate;
      return original(items, ctx);
    };
    const client = await connect(port);
    const acked = publishOrClose(client, 'audit/dev-1/events', JSON.stringify({ id: 'd1', type: 't' }));
    await new Promise((r) => setTimeout(r, 50));
    const closing = ingress.close();
    release();
    expect(await acked).toBe('acked');
    await closing;
    expect(core.events.map((e) => e.id)).toEqual(['d1']);
    await ingress.close(); // idempotent
  });
});
