import { mkdir } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, postEvents, removeDir, startAgent, tempDir, waitFor } from './agent-harness.js';
import { FakeMqttBroker } from './fake-mqtt-broker.js';

/**
 * SIGTERM while the gateway holds every answer: the sender gives its
 * in-flight batches 5 s, then drops the link; the stop must not wait for the
 * push timeout (30 s by default, longer than systemd's stop timeout when an
 * operator raises it). Every acknowledged event is still in the buffer after
 * the restart, undelivered.
 */

let dir: string;
const servers: Server[] = [];
beforeAll(async () => {
  dir = await tempDir('agent-shutdown');
});
afterAll(async () => {
  await killAll();
  for (const s of servers) s.close();
  await removeDir(dir);
});

/** A TCP peer that takes connections and bytes and never answers. */
async function silentPeer(): Promise<number> {
  const server = createServer((socket) => {
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function stopTakesAndKeeps(name: string, push: Record<string, unknown>): Promise<number> {
  const sub = join(dir, name);
  await mkdir(sub);
  const config = { id: name, push: { ...push, batch: { maxEvents: 50, maxWaitMs: 0 } } };
  const agent = await startAgent(sub, config);
  const events = Array.from({ length: 100 }, (_, i) => ({ id: `${name}-${i}`, type: 'shutdown.test' }));
  expect((await postEvents(agent.intakeUrl, events)).status).toBe(200);
  await waitFor(async () => (await agent.status()).push.state === 'sending', 'a push in flight');
  const started = Date.now();
  expect(await agent.stop(60_000)).toBe(0);
  const took = Date.now() - started;
  const again = await startAgent(sub, config);
  const status = await again.status();
  expect({ head: status.head, delivered: status.delivered }).toEqual({ head: 100, delivered: 0 });
  await again.kill();
  return took;
}

describe('agent SIGTERM against a gateway that never answers', () => {
  it('HTTP: exits 0 after the in-flight grace, not after the 60 s push timeout', async () => {
    const port = await silentPeer();
    const took = await stopTakesAndKeeps('silent-http', { http: { url: `http://127.0.0.1:${port}/v1/events`, timeoutMs: '60s' } });
    expect(took).toBeLessThan(20_000);
  });

  it('MQTT: a broker that acks nothing after CONNECT holds the stop for the grace and the status wait only', async () => {
    const broker = new FakeMqttBroker(() => 'ignore');
    const port = await broker.start();
    try {
      const took = await stopTakesAndKeeps('silent-mqtt', { mqtt: { url: `mqtt://127.0.0.1:${port}`, timeoutMs: '60s' } });
      expect(took).toBeLessThan(25_000);
    } finally {
      await broker.stop();
    }
  });
});

describe('agent SIGTERM with clients connected to its listeners but sending nothing', () => {
  it('drops at once the connections with no request in progress instead of waiting out the close grace', async () => {
    const sub = join(dir, 'idle-conns');
    await mkdir(sub);
    const agent = await startAgent(sub, { id: 'idle-conns' });
    expect((await postEvents(agent.intakeUrl, [{ type: 'idle.test' }])).status).toBe(200);
    // A connection that never sends a request, on the intake and on the pull listener (a keep-alive pool's spare).
    const hold = async (url: string): Promise<Socket> => {
      const { hostname, port } = new URL(url);
      const socket = connect(Number(port), hostname);
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('connect', resolve));
      return socket;
    };
    const sockets = [await hold(agent.intakeUrl), await hold(agent.pullUrl)];
    const closedByAgent = sockets.map((socket) => new Promise((resolve) => socket.once('close', resolve)));
    const started = Date.now();
    // The intake's close grace is 10 s and the pull listener's 5 s: well under them means the idle ones were dropped.
    expect(await agent.stop(30_000)).toBe(0);
    expect(Date.now() - started).toBeLessThan(4_000);
    await Promise.all(closedByAgent);
  });
});

describe('agent SIGTERM with an upload in progress', () => {
  it('answers a request whose body is still coming 503 at once, and keeps what was acknowledged', async () => {
    const sub = join(dir, 'stalled-upload');
    await mkdir(sub);
    const agent = await startAgent(sub, { id: 'stalled-upload' });
    expect((await postEvents(agent.intakeUrl, [{ id: 'before', type: 'stall.test' }])).status).toBe(200);
    // Headers and the start of a body, then nothing more (a stalled or very slow producer).
    const { hostname, port } = new URL(agent.intakeUrl);
    const socket = connect(Number(port), hostname);
    socket.on('error', () => undefined);
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('utf8');
    });
    const closed = new Promise((resolve) => socket.once('close', resolve));
    await new Promise((resolve) => socket.once('connect', resolve));
    // Expect: 100-continue: the 100 says the request is past its checks and its body is being read.
    socket.write('POST /v1/events HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n');
    await waitFor(() => answer.includes('100 Continue'), 'the 100 Continue');
    socket.write('[{"type":"stall.test",');
    answer = '';
    // Before, the stop waited out the intake's 10 s close grace for the rest of this body, then dropped the connection
    // unanswered: the producer could not tell a refusal from a loss.
    expect(await agent.stop(30_000)).toBe(0);
    await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 503 /);
    expect(answer).toMatch(/retry-after: 1/i);
    expect(answer).toContain('METEORZX_INTAKE_CLOSING');
    const again = await startAgent(sub, { id: 'stalled-upload' });
    expect((await again.status()).head).toBe(1);
    await again.kill();
  });
});
