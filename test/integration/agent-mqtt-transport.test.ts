import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { chainEvent, type ChainedEvent } from '../../protocols/index.js';
import { MqttTransport } from '../../agent/push/mqtt-transport.js';
import { Sender } from '../../agent/push/sender.js';
import type { StoredLine } from '../../agent/buffer/types.js';
import { FakeBuffer, storedLine } from '../unit/agent-fake-buffer.js';
import { FakeMqttBroker, within, type FakeBrokerPacket } from './fake-mqtt-broker.js';

function events(n: number, agent: string): StoredLine[] {
  let prev: string | undefined;
  return Array.from({ length: n }, (_, i) => {
    const e = chainEvent({ id: `${agent}-${i + 1}`, type: 't', source: agent, time: '2026-01-01T00:00:00Z', agent, epoch: 'E1', seq: i + 1 }, prev) as ChainedEvent;
    prev = e.hash;
    return storedLine(e);
  });
}

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** Subscribes with the real mosquitto_sub and collects `topic payload` lines. */
function mosquittoSub(topic: string) {
  const lines: string[] = [];
  const proc = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', '1883', '-v', '-q', '1', '-t', topic]);
  let buf = '';
  proc.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    lines.push(...parts);
  });
  cleanup.push(() => {
    proc.kill('SIGTERM');
  });
  return lines;
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('MQTT push transport (against Mosquitto on 127.0.0.1:1883)', () => {
  it('publishes batches as QoS 1 JSON arrays, says online/offline on the retained status topic', async () => {
    const id = `unit-${process.pid}-${Date.now()}`;
    const lines = mosquittoSub(`audit/${id}/#`);
    // The subscription is live once it sees a marker published after it.
    while (!lines.some((l) => l.startsWith(`audit/${id}/cmd `))) {
      spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', '1883', '-q', '1', '-t', `audit/${id}/cmd`, '-m', 'marker']);
      await new Promise((r) => setTimeout(r, 50));
    }
    const t = new MqttTransport({ url: 'mqtt://127.0.0.1:1883', id, epoch: 'E1' });
    cleanup.push(() => t.close());
    const batch = events(5, id);
    expect(await t.send(batch)).toEqual({ kind: 'acked', rejected: [] });
    await waitFor(() => lines.some((l) => l.startsWith(`audit/${id}/events `)), 'events publish');
    const payload = JSON.parse((lines.find((l) => l.startsWith(`audit/${id}/events `)) as string).slice(`audit/${id}/events `.length)) as ChainedEvent[];
    expect(payload.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    // MQTT.js's default would have mqtt-packet (the copy MQTT.js writes with) build a Buffer for
    // each of the 65,536 packet ids at the first publish: 6 MB of the agent's heap.
    const numbers = createRequire(createRequire(import.meta.url).resolve('mqtt'))('mqtt-packet/numbers.js') as { cache: Record<number, Buffer> };
    expect(Object.keys(numbers.cache)).toHaveLength(0);
    expect(lines.some((l) => l.startsWith(`audit/${id}/status `) && l.includes('"online"') && l.includes('"epoch":"E1"'))).toBe(true);
    // The buffer began a new epoch (a replaced store): the retained status says so.
    t.epochChanged('E2');
    await waitFor(() => lines.some((l) => l.startsWith(`audit/${id}/status `) && l.includes('"online"') && l.includes('"epoch":"E2"')), 'status naming the new epoch');
    await t.close();
    await waitFor(() => lines.some((l) => l.startsWith(`audit/${id}/status `) && l.includes('"offline"')), 'offline status');
    // Clear the retained status so the broker does not keep test litter.
    spawn('mosquitto_pub', ['-h', '127.0.0.1', '-t', `audit/${id}/status`, '-r', '-n']);
  });

  it('reports an unreachable broker as retry, not an exception', async () => {
    const t = new MqttTransport({ url: 'mqtt://127.0.0.1:9', id: 'unit-dead', connectTimeoutMs: 2000 });
    cleanup.push(() => t.close());
    const outcome = await t.send(events(1, 'unit-dead'));
    expect(outcome.kind).toBe('retry');
  });
});

const isOffline = (p: FakeBrokerPacket) => p.topic?.endsWith('/status') === true && String(p.payload).includes('"offline"');
const isEvents = (p: FakeBrokerPacket) => p.topic?.endsWith('/events') === true;

async function fakeBroker(onPublish: ConstructorParameters<typeof FakeMqttBroker>[0]): Promise<string> {
  const broker = new FakeMqttBroker(onPublish);
  const port = await broker.start();
  cleanup.push(() => broker.stop());
  return `mqtt://127.0.0.1:${port}`;
}

describe('MQTT push transport: close() is bounded whatever the broker does (a fake broker stages it)', () => {
  // MQTT.js calls a QoS 1 publish back only on its PUBACK or a forced end, never when the peer closes
  // the link, and end() waits for every outstanding PUBACK: each of these hung close() for ever.
  it('returns when the broker cuts the link instead of acking the "offline" status', async () => {
    let offline = 0;
    const url = await fakeBroker((p) => {
      if (!isOffline(p)) return 'ack';
      offline += 1;
      return 'drop';
    });
    const t = new MqttTransport({ url, id: 'close-1', timeoutMs: 20_000 });
    expect((await t.send(events(3, 'close-1'))).kind).toBe('acked');
    expect(await within(t.close(), 3000)).not.toBe('timeout');
    expect(offline).toBe(1);
  });

  it('does not wait for an events PUBACK the broker holds, whether it keeps the link or later cuts it', async () => {
    for (const cut of [false, true]) {
      const url = await fakeBroker((p, socket) => {
        if (!isEvents(p)) return 'ack';
        if (cut) setTimeout(() => socket.destroy(), 1000);
        return 'ignore';
      });
      const t = new MqttTransport({ url, id: `close-held-${cut}`, timeoutMs: 20_000 });
      const sent = t.send(events(3, `close-held-${cut}`));
      await new Promise((r) => setTimeout(r, 200));
      // The buffer is the queue: the unacked batch is a retry (resent after a restart), not a wait.
      expect(await within(t.close(), 3000)).not.toBe('timeout');
      expect(await within(sent, 100)).toMatchObject({ kind: 'retry', error: 'transport closed' });
    }
  });

  it('reports a publish the broker closes the link under, or leaves unacked past timeoutMs (each time), as unanswered; a refused connection is not', async () => {
    const dropping = await fakeBroker((p) => (isEvents(p) ? 'drop' : 'ack'));
    const t1 = new MqttTransport({ url: dropping, id: 'unanswered-1', timeoutMs: 20_000 });
    cleanup.push(() => t1.close());
    expect(await t1.send(events(3, 'unanswered-1'))).toEqual({ kind: 'retry', error: 'connection to the broker closed', unanswered: true });
    const holding = await fakeBroker((p) => (isEvents(p) ? 'ignore' : 'ack'));
    const t2 = new MqttTransport({ url: holding, id: 'unanswered-2', timeoutMs: 200 });
    cleanup.push(() => t2.close());
    // Twice at once: the second goes on a fresh link, not on the one the timeout is still ending ("client disconnecting").
    for (let i = 0; i < 2; i += 1) expect(await t2.send(events(3, 'unanswered-2'))).toEqual({ kind: 'retry', error: 'no PUBACK within 200 ms', unanswered: true });
    const t3 = new MqttTransport({ url: 'mqtt://127.0.0.1:9', id: 'unanswered-3', timeoutMs: 200 });
    cleanup.push(() => t3.close());
    const refused = await t3.send(events(3, 'unanswered-3'));
    expect(refused.kind).toBe('retry');
    expect(refused).not.toHaveProperty('unanswered');
  });

  it('gives the "offline" status at most its PUBACK timeout when the broker holds it and keeps the link', async () => {
    const packets: FakeBrokerPacket[] = [];
    const url = await fakeBroker((p) => {
      packets.push(p);
      return isOffline(p) ? 'ignore' : 'ack';
    });
    const t = new MqttTransport({ url, id: 'close-2', timeoutMs: 1000 });
    expect((await t.send(events(1, 'close-2'))).kind).toBe('acked');
    const started = Date.now();
    expect(await within(t.close(), 4000)).not.toBe('timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(packets.filter(isOffline)).toHaveLength(1);
  });

  it("bounds the sender's close when the gateway stops acking and cuts the link (both hosts shutting down)", async () => {
    let draining = false;
    const url = await fakeBroker(() => (draining ? 'drop' : 'ack'));
    const buffer = new FakeBuffer('close-3');
    const sender = new Sender(buffer, new MqttTransport({ url, id: 'close-3' }), {
      maxEvents: 10,
      maxWaitMs: 0,
      backoff: { initialMs: 10, maxMs: 100 },
      breaker: { threshold: 5, cooldownMs: 1000 },
      closeTimeoutMs: 500,
    });
    await sender.start();
    await buffer.fill(20);
    await waitFor(() => buffer.delivered === 20, 'all 20 delivered');
    draining = true;
    expect(await within(sender.close(), 3000)).not.toBe('timeout');
  });
});

describe('MQTT push transport: commands', () => {
  it('takes commands on a link the sender opened before onCommand was called', async () => {
    const id = `late-cmd-${process.pid}-${Date.now()}`;
    const t = new MqttTransport({ url: 'mqtt://127.0.0.1:1883', id, epoch: 'E1' });
    cleanup.push(() => t.close());
    cleanup.push(() => void spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', '1883', '-t', `audit/${id}/status`, '-r', '-n']));
    expect((await t.send(events(1, id))).kind).toBe('acked');
    const received: string[] = [];
    t.onCommand((payload) => received.push(payload.toString()));
    const deadline = Date.now() + 5000;
    while (received.length === 0 && Date.now() < deadline) {
      spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', '1883', '-q', '1', '-t', `audit/${id}/cmd`, '-m', '{"op":"pull","after":0}']);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(received[0]).toBe('{"op":"pull","after":0}');
  });
});
