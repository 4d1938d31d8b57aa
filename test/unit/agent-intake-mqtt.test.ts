import { randomBytes, scryptSync } from 'node:crypto';
import { connect as connectTcp } from 'node:net';
import mqttPacket from 'mqtt-packet';
import mqtt, { type MqttClient } from 'mqtt';
import {
  ackedWithin,
  connectClient,
  handedOnTakeover,
  heldQos2PayloadBytes,
  incomingStoreOf,
  offlineSessionBacklog,
  packetIdCacheSize,
  publishOrClose,
  stalledSubscriber,
} from './mqtt-test-client.js';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, deterministicId, isMeteorError } from '../../protocols/index.js';
import { MAX_QUEUED_MESSAGES } from '../../common/mqtt-packet-cap.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { EdgeBrokerIntake } from '../../agent/intake/mqtt/edge-broker.js';
import { decideEdgePublish, PublishRefused } from '../../agent/intake/mqtt/edge-publish.js';
import type { DeviceLogin } from '../../agent/intake/mqtt/device-logins.js';
import { BlockableBuffer, FakeBuffer } from './agent-fake-buffer.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

async function startEdge(users: DeviceLogin[] = [], buffer: FakeBuffer = new FakeBuffer()) {
  const metrics = new AgentMetrics({ buffer: () => buffer.state(), push: () => 'disabled' }, { processMetrics: false });
  // Session expiry on, as the config always has it (its queues replace the memory store's).
  const intake = new EdgeBrokerIntake({ listen: { host: '127.0.0.1', port: 0 }, users, limits: DEFAULT_LIMITS, buffer, metrics, sessionExpiryMs: 7_200_000 });
  await intake.start();
  closers.push(() => intake.close());
  return { intake, buffer, metrics, port: intake.address().port };
}

function connect(port: number, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return connectClient(closers, port, opts);
}

const metricValue = async (metrics: AgentMetrics, name: string, labels: Record<string, string>) => {
  const metric = await metrics.registry.getSingleMetric(name)?.get();
  return metric?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
};

/** A scrypt hash in the documented format, with a small N so the test stays fast. */
function scryptHash(password: string): string {
  const salt = randomBytes(16);
  const key = scryptSync(password, salt, 32, { N: 1024, r: 8, p: 1 });
  return `scrypt$N=1024,r=8,p=1$${salt.toString('base64')}$${key.toString('base64')}`;
}

describe('edge MQTT broker intake', () => {
  it('buffers events before the PUBACK, with the device as source and the gateway’s deterministic id', async () => {
    const { port, buffer, metrics } = await startEdge();
    const client = await connect(port, { clientId: 'a-device-client-id-longer-than-twenty-three' });
    await client.publishAsync('audit/dev-1/events', JSON.stringify({ type: 'door.open', data: { n: 1 } }), { qos: 1 });
    // The PUBACK has arrived: the event must already be in the buffer.
    expect(buffer.events).toHaveLength(1);
    expect(buffer.events[0]).toMatchObject({ type: 'door.open', source: 'dev-1', id: deterministicId('dev-1', { type: 'door.open', data: { n: 1 } }), agent: 'fake-agent' });

    await client.publishAsync('audit/dev-1/events', JSON.stringify([{ id: 'e2', type: 't' }, { type: 7 }, { id: 'e3', type: 't' }]), { qos: 1 });
    expect(buffer.events.map((e) => [e.id, e.type, e.source])).toEqual([
      [expect.any(String), 'door.open', 'dev-1'],
      ['e2', 't', 'dev-1'],
      [expect.stringMatching(/^d:/), 'meteorzx.intake.error', 'dev-1'],
      ['e3', 't', 'dev-1'],
    ]);
    expect(buffer.events[2]?.data).toMatchObject({ intake: 'mqtt', topic: 'audit/dev-1/events', index: 1, reason: expect.stringMatching(/^type:/) });
    // One append per publish: its events share a group commit.
    expect(buffer.appendCalls).toBe(2);
    expect(await metricValue(metrics, 'meteorzx_agent_events_in_total', { intake: 'mqtt' })).toBe(4);
    expect(await metricValue(metrics, 'meteorzx_agent_events_invalid_total', { intake: 'mqtt' })).toBe(1);
    // The edge broker wrote a CONNACK and two PUBACKs without building mqtt-packet's 6 MB id cache.
    expect(packetIdCacheSize()).toBe(0);
  });

  it('a QoS 2 publish waiting for its PUBREL holds its id, not its payload: a device that never sends PUBREL pins no event bodies', async () => {
    const { port, buffer, intake } = await startEdge();
    const events = Array.from({ length: 5 }, (_, i) => ({ id: `q2-${i}`, type: 't', data: { pad: 'x'.repeat(50_000) } }));
    const atPubrec = () => expect(buffer.events.map((e) => e.id)).toEqual(events.map((e) => e.id));
    // Before the fix: the whole 250 KB payload, until a PUBREL that need never come (up to 1,000 per device, each up to maxBodyBytes).
    expect(await heldQos2PayloadBytes(closers, port, 'audit/dev-1/events', Buffer.from(JSON.stringify(events)), incomingStoreOf(intake), atPubrec)).toBe(0);
    // The resent PUBLISH (before its PUBREL) got its PUBREC again and was not buffered twice.
    expect(buffer.events.map((e) => e.id)).toEqual(events.map((e) => e.id));
  });

  it('holds at most 1,000 messages for a persistent session whose device is away, as Mosquitto does', async () => {
    const { port, intake } = await startEdge();
    const n = MAX_QUEUED_MESSAGES + 200;
    const backlog = await offlineSessionBacklog(closers, port, intake, 'audit/dev-1/status', async () => {
      const device = await connect(port);
      for (let i = 0; i < n; i++) await device.publishAsync('audit/dev-1/status', `{"state":"s${i}"}`, { qos: 1 });
    });
    // Before the fix: all 1,200, kept in the agent's memory until that session came back, if ever.
    expect(backlog).toEqual({ held: MAX_QUEUED_MESSAGES, delivered: MAX_QUEUED_MESSAGES });
  });

  it('a local subscriber that stops reading holds no device: events are forwarded best effort', async () => {
    const { port, buffer } = await startEdge();
    await stalledSubscriber(closers, port);
    const n = 600;
    // Before the fix: a few dozen acked, then each publish waited for the stalled socket to drain (up to 60 s).
    expect(await ackedWithin(await connect(port), 'audit/dev-1/events', n, 32 * 1024, 10_000)).toBe(n);
    expect(buffer.events).toHaveLength(n);
  });

  it('keeps no retained command and refuses a status payload over 4 KiB, as the gateway does (retained payloads live in memory)', async () => {
    const { port, buffer, intake } = await startEdge();
    const retainedOf = async (topic: string) => {
      const persistence = (intake as unknown as { broker: { persistence: { createRetainedStream(p: string): AsyncIterable<{ payload: Buffer }> } } }).broker.persistence;
      const out: string[] = [];
      for await (const packet of persistence.createRetainedStream(topic)) out.push(packet.payload.toString());
      return out;
    };
    const client = await connect(port);
    expect(await publishOrClose(client, 'audit/dev-3/cmd', '{"op":"pull","after":0}', { retain: true })).toBe('acked');
    expect(await publishOrClose(client, 'audit/dev-3/status', '{"state":"online"}', { retain: true })).toBe('acked');
    expect(await retainedOf('audit/dev-3/cmd')).toEqual([]);
    expect(await retainedOf('audit/dev-3/status')).toEqual(['{"state":"online"}']);
    expect(await publishOrClose(await connect(port), 'audit/dev-4/status', 'x'.repeat(4097), { retain: true })).toBe('closed');
    expect(await retainedOf('audit/dev-4/status')).toEqual([]);
    expect(buffer.events).toHaveLength(0);
  });

  it('buffers an unreadable payload as one intake error event and keeps the device connected', async () => {
    const { port, buffer } = await startEdge();
    const client = await connect(port);
    expect(await publishOrClose(client, 'audit/dev-2/events', '{"type": nope')).toBe('acked');
    expect(buffer.events[0]).toMatchObject({ type: 'meteorzx.intake.error', source: 'dev-2', data: { raw: '{"type": nope' } });
    expect(client.connected).toBe(true);
  });

  it('authenticates devices (plain and scrypt), pins the topic to the login and applies relayFor', async () => {
    const users: DeviceLogin[] = [
      { username: 'dev-1', password: 'plain-secret', source: 'dev-1' },
      { username: 'gw-9', password: scryptHash('hashed-secret'), source: 'gw-9', relayFor: ['sensor-*'] },
    ];
    const { port, buffer, metrics } = await startEdge(users);
    await expect(connect(port, { username: 'dev-1', password: 'wrong' })).rejects.toThrow(/Bad username or password|Not authorized/i);
    await expect(connect(port)).rejects.toThrow();

    const dev1 = await connect(port, { username: 'dev-1', password: 'plain-secret' });
    expect(await publishOrClose(dev1, 'audit/dev-1/events', '{"type":"a"}')).toBe('acked');
    expect(await publishOrClose(dev1, 'audit/gw-9/events', '{"type":"b"}')).toBe('closed');

    const relay = await connect(port, { username: 'gw-9', password: 'hashed-secret' });
    const payload = [{ type: 'c', source: 'sensor-4' }, { type: 'd', source: 'dev-1' }];
    expect(await publishOrClose(relay, 'audit/gw-9/events', JSON.stringify(payload))).toBe('acked');
    expect(buffer.events.map((e) => [e.type, e.source])).toEqual([
      ['a', 'dev-1'],
      ['c', 'sensor-4'],
      ['meteorzx.intake.error', 'gw-9'],
    ]);
    expect(await metricValue(metrics, 'meteorzx_agent_intake_errors_total', { intake: 'mqtt', kind: 'refused' })).toBe(1);
    expect(await metricValue(metrics, 'meteorzx_agent_intake_errors_total', { intake: 'mqtt', kind: 'auth' })).toBe(2);
  });

  it('exports its error series at 0 from the start, so the first refused login is an increase', async () => {
    const { metrics } = await startEdge([{ username: 'dev-1', password: 'pw', source: 'dev-1' }]);
    const series = (await metrics.registry.getSingleMetric('meteorzx_agent_intake_errors_total')?.get())?.values ?? [];
    // Before the fix: none, until the first increment (which Prometheus' increase() then does not see).
    expect(series.filter((v) => v.labels.intake === 'mqtt').map((v) => [v.labels.kind, v.value])).toEqual(
      expect.arrayContaining([
        ['auth', 0],
        ['refused', 0],
      ]),
    );
  });

  it('hands a login that takes over another device’s session (same client id) nothing queued for it', async () => {
    const { port } = await startEdge([
      { username: 'dev-1', password: 'pw1', source: 'dev-1' },
      { username: 'dev-2', password: 'pw2', source: 'dev-2' },
    ]);
    const dev1 = { username: 'dev-1', password: 'pw1' };
    const handed = await handedOnTakeover(closers, port, dev1, 'audit/dev-1/status', async () => {
      const device = await connect(port, dev1);
      for (let i = 0; i < 3; i++) await device.publishAsync('audit/dev-1/status', `{"state":"s${i}"}`, { qos: 1 });
    }, { username: 'dev-2', password: 'pw2' });
    // Before the fix: dev-2 was handed dev-1's three status messages, a topic it may not subscribe to.
    expect(handed).toEqual([]);
  });

  it('holds the PUBACK while the buffer is full and sends it once there is space', async () => {
    const buffer = new BlockableBuffer();
    const { port, metrics } = await startEdge([], buffer);
    const client = await connect(port);
    buffer.full = true;
    let acked = false;
    const publish = client.publishAsync('audit/dev-3/events', '{"type":"slow"}', { qos: 1 }).then(() => (acked = true));
    const deadline = Date.now() + 5000;
    while ((await metricValue(metrics, 'meteorzx_agent_intake_blocked', { intake: 'mqtt' })) !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(await metricValue(metrics, 'meteorzx_agent_intake_blocked', { intake: 'mqtt' })).toBe(1);
    expect(acked).toBe(false);
    expect(buffer.events).toHaveLength(0);
    expect(client.connected).toBe(true);

    buffer.makeSpace();
    await publish;
    expect(buffer.events.map((e) => e.type)).toEqual(['slow']);
    expect(await metricValue(metrics, 'meteorzx_agent_intake_blocked', { intake: 'mqtt' })).toBe(0);
  });

  it('a QoS 2 publish resent (DUP) while the full buffer holds its first copy is buffered once', async () => {
    const buffer = new BlockableBuffer();
    const { port, metrics } = await startEdge([], buffer);
    buffer.full = true;
    const sock = connectTcp(port, '127.0.0.1');
    closers.push(async () => sock.destroy());
    const received: number[] = [];
    sock.on('data', (d: Buffer) => {
      for (let i = 0; i < d.length; i += 2 + (d[i + 1] as number)) received.push((d[i] as number) >> 4);
    });
    const waitFor = async (what: () => boolean | Promise<boolean>) => {
      for (let t = 0; t < 500 && !(await what()); t += 1) await new Promise((r) => setTimeout(r, 10));
    };
    sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'q2-dup', keepalive: 60 }));
    await waitFor(() => received.includes(2));
    const publish = (dup: boolean) => mqttPacket.generate({ cmd: 'publish', topic: 'audit/dev-7/events', qos: 2, dup, retain: false, messageId: 5, payload: '{"type":"q2.once"}' });
    sock.write(publish(false));
    await waitFor(async () => (await metricValue(metrics, 'meteorzx_agent_intake_blocked', { intake: 'mqtt' })) === 1);
    // A device whose client retries in-session (no PUBREC yet) sends the same message id again, DUP set.
    sock.write(publish(true));
    await new Promise((r) => setTimeout(r, 50));
    buffer.makeSpace();
    await waitFor(() => received.filter((t) => t === 5).length === 2);
    expect(received.filter((t) => t === 5)).toHaveLength(2); // a PUBREC for each copy
    // Before the fix: two events (two seqs) for one QoS 2 message.
    expect(buffer.events.map((e) => e.type)).toEqual(['q2.once']);
    sock.write(mqttPacket.generate({ cmd: 'pubrel', messageId: 5 }));
    await waitFor(() => received.includes(7));
    expect(received).toContain(7);
  });

  it('gives up a held publish when its device disconnects: nothing waits on for a device that is gone', async () => {
    const buffer = new BlockableBuffer();
    const { intake, port, metrics } = await startEdge([], buffer);
    const blocked = () => metricValue(metrics, 'meteorzx_agent_intake_blocked', { intake: 'mqtt' });
    buffer.full = true;
    for (let n = 0; n < 5; n++) {
      const device = await connect(port, { clientId: `gone-${n}` });
      void device.publishAsync(`audit/gone-${n}/events`, `{"type":"gone.${n}"}`, { qos: 1 }).catch(() => undefined);
      const deadline = Date.now() + 5000;
      while ((await blocked()) !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(await blocked()).toBe(1);
      await device.endAsync(true);
      while ((await blocked()) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(await blocked()).toBe(0);
    }
    // Space again: none of the five unacknowledged publishes is written (each device resends its own).
    buffer.makeSpace();
    await new Promise((r) => setTimeout(r, 50));
    expect(buffer.events).toHaveLength(0);
    // Nothing per device outlives its connection: no controller kept, and no dependant signal left on the
    // intake's own (Node 20's AbortSignal.any keeps one there for good).
    const internals = intake as unknown as { live: Set<unknown>; abort: AbortController };
    expect(internals.live.size).toBe(0);
    const signal = internals.abort.signal as unknown as Record<symbol, Set<unknown> | undefined>;
    const dependants = Object.getOwnPropertySymbols(signal).find((sym) => String(sym).includes('Dependant'));
    expect(dependants === undefined ? 0 : (signal[dependants]?.size ?? 0)).toBe(0);
  });

  it('closes without waiting for space: the held publish gets no PUBACK', async () => {
    const buffer = new BlockableBuffer();
    const { intake, port } = await startEdge([], buffer);
    const client = await connect(port);
    buffer.full = true;
    const outcome = publishOrClose(client, 'audit/dev-4/events', '{"type":"t"}');
    await new Promise((r) => setTimeout(r, 50));
    await intake.close();
    expect(await outcome).toBe('closed');
    expect(buffer.events).toHaveLength(0);
  });

  it('refuses to start anonymous on a non-loopback address', async () => {
    const intake = new EdgeBrokerIntake({ listen: { host: '0.0.0.0', port: 0 }, users: [], limits: DEFAULT_LIMITS, buffer: new FakeBuffer() });
    const err: unknown = await intake.start().catch((e: unknown) => e);
    expect(isMeteorError(err) && err.code).toBe('METEORZX_INSECURE_BIND');
  });
});

describe('edge publish rules', () => {
  const anonymous = { username: undefined, source: undefined, mayUseSource: () => true };
  const device = { username: 'dev-1', source: 'dev-1', mayUseSource: (s: string) => s === 'dev-1' };
  const buf = (v: unknown) => Buffer.from(JSON.stringify(v));

  it('passes status and (anonymous) command traffic without buffering it', () => {
    expect(decideEdgePublish(device, 'audit/dev-1/status', Buffer.from('online'), DEFAULT_LIMITS)).toEqual({ kind: 'pass' });
    expect(decideEdgePublish(anonymous, 'audit/dev-1/cmd', buf({ op: 'pull' }), DEFAULT_LIMITS)).toEqual({ kind: 'pass', unretained: true });
    // A Mosquitto bridge's connection state, from a device with a login too; passed, but not retained.
    expect(decideEdgePublish(device, '$SYS/broker/connection/hub.dev-1/state', Buffer.from('1'), DEFAULT_LIMITS)).toEqual({ kind: 'pass', unretained: true });
  });

  it('refuses other topics, commands from a device, and another device’s topic', () => {
    expect(() => decideEdgePublish(anonymous, 'sensors/temp', buf({}), DEFAULT_LIMITS)).toThrow(PublishRefused);
    expect(() => decideEdgePublish(device, 'audit/dev-1/cmd', buf({}), DEFAULT_LIMITS)).toThrow(PublishRefused);
    expect(() => decideEdgePublish(device, 'audit/dev-2/events', buf({ type: 't' }), DEFAULT_LIMITS)).toThrow(PublishRefused);
  });

  it('gives a retried payload the same ids, valid or not', () => {
    const payload = buf([{ type: 'a' }, { type: 'b', outcome: 'maybe' }]);
    const first = decideEdgePublish(device, 'audit/dev-1/events', payload, DEFAULT_LIMITS);
    const again = decideEdgePublish(device, 'audit/dev-1/events', payload, DEFAULT_LIMITS);
    expect(first.kind === 'events' && first.invalid).toHaveLength(1);
    const ids = (d: typeof first) => (d.kind === 'events' ? d.events.map((e) => e.id) : []);
    expect(ids(first)).toEqual(ids(again));
    expect(new Set(ids(first)).size).toBe(2);
  });

  it('turns a payload over the batch limit into one error event', () => {
    const out = decideEdgePublish(device, 'audit/dev-1/events', buf([{ type: 'a' }, { type: 'b' }]), { ...DEFAULT_LIMITS, maxBatchEvents: 1 });
    expect(out.kind === 'events' && out.events.map((e) => e.type)).toEqual(['meteorzx.intake.error']);
  });
});

describe('intake.mqtt and intake.serial config', () => {
  it('refuses anonymous devices on a non-loopback listen and names a malformed hash', async () => {
    const { parseAgentConfig } = await import('../../agent/config.js');
    expect(() => parseAgentConfig({ intake: { mqtt: { listen: '0.0.0.0:1883' } } })).toThrow(/intake\.mqtt\.users/);
    expect(() => parseAgentConfig({ intake: { mqtt: { listen: '127.0.0.1:1883', users: [{ username: 'd', password: 'scrypt$N=3$x$y' }] } } })).toThrow(
      /intake\.mqtt\.users\.0\.password.*malformed hash/,
    );
    const ok = parseAgentConfig({ intake: { mqtt: { listen: '0.0.0.0:1883', users: [{ username: 'dev-1', password: 'p' }] } } });
    expect(ok.intake.mqtt?.users[0]?.source).toBe('dev-1');
  });

  it('gives serial ports their defaults and takes type, source and maxLineBytes', async () => {
    const { parseAgentConfig } = await import('../../agent/config.js');
    const config = parseAgentConfig({ intake: { serial: [{ path: '/dev/ttyUSB0' }, { path: '/dev/ttyS1', type: 'plc.line', source: 'plc-2', maxLineBytes: '4KiB' }] } });
    expect(config.intake.serial[0]).toEqual({ path: '/dev/ttyUSB0', baudRate: 9600, delimiter: '\n', format: 'line', type: 'serial.line' });
    expect(config.intake.serial[1]).toMatchObject({ type: 'plc.line', source: 'plc-2', maxLineBytes: 4096 });
  });
});
