import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import mqtt, { type IConnackPacket, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { boundedOfflineQueues } from '../../common/mqtt-packet-cap.js';
import { expireSessions } from '../../common/mqtt-session-expiry.js';
import { connectClient, queuedFor } from './mqtt-test-client.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A bare aedes broker with session expiry (under a clock the test moves) and the offline queue bound on top. */
async function startBroker(expiryMs: number) {
  const broker = await Aedes.createBroker();
  const clock = { now: 0 };
  const expired: string[] = [];
  expireSessions(broker, { expiryMs, now: () => clock.now, onExpire: (id) => expired.push(id) });
  boundedOfflineQueues(broker, 1000, 16 * 1024 * 1024);
  const server = createServer((socket) => broker.handle(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(async () => {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { broker, clock, expired, port: (server.address() as AddressInfo).port };
}

/** A persistent session's client: its CONNACK's session-present flag, and the messages it is handed. */
async function reconnect(port: number, clientId: string): Promise<{ client: MqttClient; sessionPresent: boolean; heard: string[] }> {
  const heard: string[] = [];
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, clean: false, reconnectPeriod: 0, protocolVersion: 4 });
  client.on('message', (_topic, payload) => heard.push(payload.toString()));
  closers.push(() => client.endAsync(true));
  const connack = await new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return { client, sessionPresent: connack.sessionPresent, heard };
}

describe('MQTT session expiry', () => {
  it('keeps a persistent session until its client has been away longer than the expiry, then drops its subscriptions and queue', async () => {
    const { broker, clock, expired, port } = await startBroker(1000);
    const owner = { broker };
    const first = await reconnect(port, 'dev-a');
    expect(first.sessionPresent).toBe(false);
    await first.client.subscribeAsync('audit/dev-a/cmd', { qos: 1 });
    await first.client.endAsync();
    const publisher = await connectClient(closers, port);
    await publisher.publishAsync('audit/dev-a/cmd', 'one', { qos: 1 });
    await publisher.publishAsync('audit/dev-a/cmd', 'two', { qos: 1 });
    expect(await queuedFor(owner, 'dev-a')).toBe(2);

    // Away for just under the expiry, over several sweeps: the session stays, and the reconnect is handed its queue.
    clock.now = 999;
    await sleep(400);
    expect(expired).toEqual([]);
    const back = await reconnect(port, 'dev-a');
    expect(back.sessionPresent).toBe(true);
    for (let i = 0; i < 100 && back.heard.length < 2; i++) await sleep(10);
    expect(back.heard).toEqual(['one', 'two']);
    await back.client.endAsync();

    // Away again (since 999), a message queued meanwhile; a second session leaves later and must outlive it.
    await publisher.publishAsync('audit/dev-a/cmd', 'three', { qos: 1 });
    expect(await queuedFor(owner, 'dev-a')).toBe(1);
    clock.now = 1500;
    const other = await reconnect(port, 'dev-b');
    await other.client.subscribeAsync('audit/dev-b/cmd', { qos: 1 });
    await other.client.endAsync();
    clock.now = 999 + 1000;
    for (let i = 0; i < 100 && expired.length === 0; i++) await sleep(10);
    expect(expired).toEqual(['dev-a']);
    // Before: aedes kept the session for good — subscriptions, the queued message, session-present 1 at any reconnect.
    expect(await queuedFor(owner, 'dev-a')).toBe(0);
    const gone = await reconnect(port, 'dev-a');
    expect(gone.sessionPresent).toBe(false);
    await publisher.publishAsync('audit/dev-a/cmd', 'four', { qos: 1 });
    await sleep(100);
    // No subscription survived: nothing is delivered, nor queued.
    expect(gone.heard).toEqual([]);
    await gone.client.endAsync();
    const later = await reconnect(port, 'dev-b');
    expect(later.sessionPresent).toBe(true);
  });

  it('never expires a connected client, even one connected longer than the expiry', async () => {
    const { clock, expired, port } = await startBroker(1000);
    const first = await reconnect(port, 'dev-c');
    await first.client.subscribeAsync('audit/dev-c/cmd', { qos: 1 });
    await first.client.endAsync();
    // Back before the expiry and still connected when the clock passes it: its earlier absence is forgotten.
    clock.now = 500;
    const back = await reconnect(port, 'dev-c');
    expect(back.sessionPresent).toBe(true);
    clock.now = 5000;
    await sleep(400);
    expect(expired).toEqual([]);
    expect(back.client.connected).toBe(true);
  });
});
