import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { chainEvent, type ChainedEvent } from '../../protocols/index.js';
import { MqttTransport } from '../../agent/push/mqtt-transport.js';
import type { StoredLine } from '../../agent/buffer/types.js';
import { storedLine } from '../unit/agent-fake-buffer.js';

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
