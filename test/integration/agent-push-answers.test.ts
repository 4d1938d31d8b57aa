import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChainedEvent } from '../../protocols/index.js';
import {
  freePort,
  gatewayEvents,
  killAll,
  postEvents,
  removeDir,
  startAgent,
  startGateway,
  tempDir,
  waitFor,
  type Gateway,
} from './agent-harness.js';
import { startMosquitto } from './private-mosquitto.js';

/** The push sinks against the real gateway when it answers in less common ways. */

let dir: string;
let smallDir: string;
let gateway: Gateway;
/** A gateway whose limits are smaller than the agent's: its MQTT listener closes a connection on a packet over 64 KiB + 64 KiB. */
let small: Gateway;
let smallMqttPort: number;

beforeAll(async () => {
  dir = await tempDir('agent-push-answers');
  gateway = await startGateway(dir, await freePort());
  smallDir = await tempDir('agent-push-answers-small');
  smallMqttPort = await freePort();
  small = await startGateway(smallDir, await freePort(), { mqtt: { listen: `127.0.0.1:${smallMqttPort}` }, limits: { maxBodyBytes: '64KiB' } });
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
  await removeDir(smallDir);
});

const events = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${i}`, type: 'push.answers', data: { i } }));

describe('agent push against uncommon gateway answers', () => {
  it('a push URL the gateway answers 404 to loses nothing: no event skipped, no gap event; fixed, every event arrives once', async () => {
    const sub = await tempDir('push-404');
    const id = 'push-404';
    const fast = { batch: { maxEvents: 4, maxWaitMs: 0 }, backoff: { initialMs: 1, maxMs: 20 }, breaker: { threshold: 3, cooldownMs: 20 } };
    const agent = await startAgent(sub, { id, push: { http: { url: `${gateway.url}/v1/event` }, ...fast } });
    expect((await postEvents(agent.intakeUrl, events(id, 10))).body.accepted).toBe(10);
    // Every batch split down to single events and each of those refused again.
    await waitFor(async () => (await agent.metric('meteorzx_agent_push_sends_total{result="permanent"}')) >= 60, '60 refused sends');
    const status = await agent.status();
    expect([status.head, status.delivered]).toEqual([10, 0]); // no gap event appended, nothing passed as delivered
    expect(['backoff', 'open', 'half-open']).toContain(status.push.state);
    expect(status.push.lastError).toMatch(/^gateway answered 404/);
    expect(await agent.metric('meteorzx_agent_events_skipped_total')).toBe(0);
    expect(await agent.stop()).toBe(0);

    const fixed = await startAgent(sub, { id, push: { http: { url: `${gateway.url}/v1/events` }, ...fast } });
    await waitFor(async () => {
      const s = await fixed.status();
      return s.delivered === 10 && s.push.state === 'idle';
    }, 'delivered 10 after the URL was fixed');
    const stored = await gatewayEvents(gateway.url, id);
    expect(stored.map((e) => e.id).sort()).toEqual(events(id, 10).map((e) => e.id).sort());
    expect(stored.every((e) => e.type === 'push.answers')).toBe(true);
    expect(await fixed.stop()).toBe(0);
    await removeDir(sub);
  });

  it('a full buffer (whenFull block) still records the gap event of an event the gateway refuses for good', async () => {
    const sub = await tempDir('push-refused-full');
    const id = 'push-refused-full';
    const port = await freePort();
    const agent = await startAgent(sub, {
      id,
      limits: { maxEventBytes: '8KiB' },
      buffer: { maxBytes: '32KiB', whenFull: 'block' },
      push: { http: { url: `http://127.0.0.1:${port}/v1/events` }, batch: { maxEvents: 5, maxWaitMs: 0 }, backoff: { initialMs: 1, maxMs: 50 }, breaker: { threshold: 100, cooldownMs: 50 } },
    });
    // Seq 1 is over the gateway's 4 KiB body limit (random, so gzip cannot shrink it): refused alone, it is skipped.
    const poison = { id: `${id}-poison`, type: 'push.answers', data: { pad: randomBytes(4500).toString('base64') } };
    expect((await postEvents(agent.intakeUrl, [poison])).status).toBe(200);
    // Then the buffer is filled while no gateway listens, so it is full when the refusal comes.
    const acked: string[] = [];
    for (let n = 0; n < 400; n += 1) {
      const batch = Array.from({ length: 5 }, (_, i) => ({ id: `${id}-${n}-${i}`, type: 'push.answers', data: { pad: randomBytes(100).toString('base64') } }));
      const res = await postEvents(agent.intakeUrl, batch);
      if (res.status !== 200) break;
      acked.push(...batch.map((e) => e.id));
    }
    expect((await agent.status()).bufferedBytes).toBeGreaterThanOrEqual(32 * 1024);
    const gw = await startGateway(sub, port, { limits: { maxBodyBytes: '4KiB', maxEventBytes: '4KiB' } });
    await waitFor(async () => {
      const s = await agent.status();
      return s.delivered === s.head && s.push.state === 'idle';
    }, 'delivered everything');
    expect(await agent.metric('meteorzx_agent_events_skipped_total')).toBe(1);
    const stored = await gatewayEvents(gw.url, id);
    // Before, appending the gap event failed on the full buffer (logged only): seq 1 was lost with no gap event.
    const gaps = stored.filter((e) => e.type === 'meteorzx.gap');
    expect(gaps.map((e) => e.data)).toMatchObject([{ from: 1, to: 1, count: 1, reason: 'gateway-refused', id: poison.id }]);
    expect(stored.filter((e) => e.type !== 'meteorzx.gap').map((e) => e.id).sort()).toEqual([...acked].sort());
    expect(await agent.stop()).toBe(0);
    await gw.stop();
    await removeDir(sub);
  });

  it('with push.http.maxInFlight 1, an event the gateway refuses for good, sent alone, is skipped and the events after it delivered', async () => {
    const sub = await tempDir('push-refused-alone');
    const id = 'push-refused-alone';
    const gw = await startGateway(sub, await freePort(), { limits: { maxBodyBytes: '4KiB', maxEventBytes: '4KiB' } });
    const agent = await startAgent(sub, {
      id,
      limits: { maxEventBytes: '8KiB' },
      push: { http: { url: `${gw.url}/v1/events`, maxInFlight: 1 }, batch: { maxEvents: 5, maxWaitMs: 0 }, backoff: { initialMs: 1, maxMs: 50 }, breaker: { threshold: 3, cooldownMs: 50 } },
    });
    // Over the gateway's 4 KiB body limit (random, so gzip cannot shrink it), and the only event pending: a batch of one.
    const poison = { id: `${id}-poison`, type: 'push.answers', data: { pad: randomBytes(4500).toString('base64') } };
    expect((await postEvents(agent.intakeUrl, [poison])).status).toBe(200);
    await waitFor(async () => (await agent.metric('meteorzx_agent_push_sends_total{result="permanent"}')) >= 1, 'the event refused');
    const after = events(id, 10);
    expect((await postEvents(agent.intakeUrl, after)).status).toBe(200);
    // Before, the refused event filled the one-batch window alone: no later event was read, so none could
    // show that the gateway takes events, and it was resent for ever while everything after it waited.
    await waitFor(async () => {
      const s = await agent.status();
      return s.delivered === s.head && s.head === 12;
    }, 'delivered past the refused event', 15_000).catch(async (err: Error) => {
      throw new Error(`${err.message}; status ${JSON.stringify(await agent.status())}`);
    });
    const stored = await gatewayEvents(gw.url, id);
    expect(stored.filter((e) => e.type !== 'meteorzx.gap').map((e) => e.id).sort()).toEqual(after.map((e) => e.id).sort());
    expect(stored.filter((e) => e.type === 'meteorzx.gap').map((e) => e.data)).toMatchObject([{ from: 1, to: 1, reason: 'gateway-refused', id: poison.id }]);
    expect(await agent.stop()).toBe(0);
    await gw.stop();
    await removeDir(sub);
  });

  it('MQTT push over WebSocket to a URL with no path (ws://host:port) reaches the gateway, whose listener serves /mqtt', async () => {
    const sub = await tempDir('push-ws');
    const id = 'push-ws';
    const wsPort = await freePort();
    const gw = await startGateway(sub, await freePort(), { mqtt: { listen: '127.0.0.1:0', ws: { listen: `127.0.0.1:${wsPort}` } } });
    const agent = await startAgent(sub, { id, push: { mqtt: { url: `ws://127.0.0.1:${wsPort}` }, backoff: { initialMs: 1, maxMs: 50 } } });
    expect((await postEvents(agent.intakeUrl, events(id, 10))).status).toBe(200);
    // Before, MQTT.js asked for the path / and the gateway closed the upgrade: "connection closed before CONNACK" for ever.
    await waitFor(async () => (await agent.status()).delivered === 10, 'delivered 10', 15_000).catch(async (err: Error) => {
      throw new Error(`${err.message}; status ${JSON.stringify(await agent.status())}`);
    });
    expect((await gatewayEvents(gw.url, id)).map((e) => e.id).sort()).toEqual(events(id, 10).map((e) => e.id).sort());
    expect(await agent.stop()).toBe(0);
    await gw.stop();
    await removeDir(sub);
  });

  it('a batch of non-ASCII events stays within half of limits.maxBodyBytes in UTF-8 bytes: a Mosquitto message_size_limit set so loses nothing', async () => {
    const sub = await tempDir('push-mosq-utf8');
    const id = 'push-mosq-utf8';
    const port = await freePort();
    // docs/agent.md: against message_size_limit, keep half the agent's limits.maxBodyBytes (64 KiB here) below it.
    const broker = await startMosquitto(sub, 'mosquitto', port, ['allow_anonymous true', 'message_size_limit 40000']);
    const lines: string[] = [];
    let subscriber: ReturnType<typeof spawn> | undefined;
    try {
      subscriber = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', `audit/${id}/events`, '-t', 'ready'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let partial = '';
      subscriber.stdout?.on('data', (c: Buffer) => {
        const parts = (partial + c.toString()).split('\n');
        partial = parts.pop() ?? '';
        lines.push(...parts);
      });
      await waitFor(() => {
        spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-t', 'ready', '-m', 'x'], { stdio: 'ignore' });
        return lines.length > 0;
      }, 'mosquitto_sub ready');
      const agent = await startAgent(sub, {
        id,
        limits: { maxBodyBytes: '64KiB' },
        push: { mqtt: { url: `mqtt://127.0.0.1:${port}` }, batch: { maxEvents: 200, maxWaitMs: 50 }, backoff: { initialMs: 1, maxMs: 50 } },
      });
      // 100 events of 1,000 CJK characters: 3,000 bytes each in UTF-8, 1,000 UTF-16 units.
      const batch = Array.from({ length: 100 }, (_, i) => ({ id: `${id}-${i}`, type: 'push.answers', data: { i, text: '監'.repeat(1000) } }));
      // Posted 10 at a time: the intake's body limit is 64 KiB too.
      for (let i = 0; i < 100; i += 10) expect((await postEvents(agent.intakeUrl, batch.slice(i, i + 10))).body.accepted).toBe(10);
      await waitFor(async () => (await agent.status()).delivered === 100, 'delivered 100');
      const seen = () => new Set(lines.filter((l) => l.startsWith('[')).flatMap((l) => (JSON.parse(l) as ChainedEvent[]).map((e) => e.seq)));
      // Before, batches were cut at 32 KiB counted in UTF-16 units, about 96 KB of UTF-8: Mosquitto acked and dropped them all.
      await waitFor(() => seen().size >= 100, 'mosquitto_sub saw 100 seqs', 10_000).catch((err: Error) => {
        throw new Error(`${err.message}: saw ${seen().size}`);
      });
      expect(await agent.stop()).toBe(0);
    } finally {
      subscriber?.kill('SIGTERM');
      broker.proc.kill('SIGTERM');
      await removeDir(sub);
    }
  });

  it('MQTT push to a gateway whose packet limit is below the batch: the batch is halved until it fits, every event arrives once', async () => {
    const sub = await tempDir('push-mqtt-small');
    const id = 'push-mqtt-small';
    const agent = await startAgent(sub, {
      id,
      push: { mqtt: { url: `mqtt://127.0.0.1:${smallMqttPort}` }, batch: { maxEvents: 200, maxWaitMs: 50 }, backoff: { initialMs: 1, maxMs: 50 }, breaker: { threshold: 3, cooldownMs: 50 } },
    });
    // 200 events of about 2 KB: one 400 KB publish, three times what that gateway reads in one packet.
    const big = Array.from({ length: 200 }, (_, i) => ({ id: `${id}-${i}`, type: 'push.answers', data: { i, pad: 'p'.repeat(2000) } }));
    expect((await postEvents(agent.intakeUrl, big)).body.accepted).toBe(200);
    await waitFor(async () => (await agent.status()).delivered === 200, 'delivered 200', 40_000);
    const stored = await gatewayEvents(small.url, id);
    expect(stored.map((e) => e.id).sort()).toEqual(big.map((e) => e.id).sort());
    expect(small.logs.some((l) => l.includes('mqtt packet too large'))).toBe(true);
    expect(await agent.stop()).toBe(0);
    await removeDir(sub);
  });

  it('MQTT push to a Mosquitto with max_packet_size below the batch: halved until it fits, mosquitto_sub sees every seq', async () => {
    const sub = await tempDir('push-mosq-small');
    const id = 'push-mosq-small';
    const port = await freePort();
    // Mosquitto closes the connection of a client whose packet is over max_packet_size (MQTT 3.1.1: no other answer).
    const broker = await startMosquitto(sub, 'mosquitto', port, ['allow_anonymous true', 'max_packet_size 20000']);
    const lines: string[] = [];
    let subscriber: ReturnType<typeof spawn> | undefined;
    try {
      subscriber = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-v', '-q', '1', '-t', `audit/${id}/events`, '-t', 'ready'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let partial = '';
      subscriber.stdout?.on('data', (c: Buffer) => {
        const parts = (partial + c.toString()).split('\n');
        partial = parts.pop() ?? '';
        lines.push(...parts);
      });
      await waitFor(() => {
        spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-t', 'ready', '-m', 'x'], { stdio: 'ignore' });
        return lines.length > 0;
      }, 'mosquitto_sub ready');
      const agent = await startAgent(sub, {
        id,
        push: { mqtt: { url: `mqtt://127.0.0.1:${port}` }, batch: { maxEvents: 50, maxWaitMs: 50 }, backoff: { initialMs: 1, maxMs: 50 }, breaker: { threshold: 3, cooldownMs: 50 } },
      });
      // 50 events of about 1 KB: one 50 KB publish, over the broker's 20,000 bytes.
      const batch = Array.from({ length: 50 }, (_, i) => ({ id: `${id}-${i}`, type: 'push.answers', data: { i, pad: 'p'.repeat(1000) } }));
      expect((await postEvents(agent.intakeUrl, batch)).body.accepted).toBe(50);
      await waitFor(async () => (await agent.status()).delivered === 50, 'delivered 50', 40_000);
      const prefix = `audit/${id}/events `;
      const seen = () => new Set(lines.filter((l) => l.startsWith(prefix)).flatMap((l) => (JSON.parse(l.slice(prefix.length)) as ChainedEvent[]).map((e) => e.seq)));
      await waitFor(() => seen().size >= 50, 'mosquitto_sub saw 50 seqs');
      expect([...seen()].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      expect(await agent.stop()).toBe(0);
    } finally {
      subscriber?.kill('SIGTERM');
      broker.proc.kill('SIGTERM');
      await removeDir(sub);
    }
  });
});
