import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, postEvents, removeDir, startGateway, tempDir, waitFor } from './agent-harness.js';

/**
 * SIGTERM and SIGHUP of a gateway while HTTP clients hold connections
 * without finishing a request: one sent headers and part of a body, one
 * connected and sent nothing. Node stops timing requests out once its server
 * closes, and fastify's close waited for both, so the gateway never exited
 * (a reload never restarted it: MQTT and HTTP were already closed). Now
 * requests in progress get 5 s (CLOSE_TIMEOUT_MS), then their connections
 * are dropped. Likewise MQTT connections that never completed their
 * CONNECT held the stop for aedes' connect timeout (30 s).
 */

let dir: string;
const sockets: Socket[] = [];
beforeAll(async () => {
  dir = await tempDir('gateway-stop-stalled');
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await killAll();
  await removeDir(dir);
});

/** Opens the two stalled clients; resolves once both are connected and the partial request was written. */
async function stalledClients(port: number): Promise<Promise<void>[]> {
  const open = (first: string) =>
    new Promise<{ closed: Promise<void> }>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        if (first !== '') socket.write(first);
        resolve({ closed: new Promise<void>((r) => socket.once('close', () => r())) });
      });
      socket.on('error', reject);
      socket.on('data', () => undefined);
      sockets.push(socket);
    });
  const partial = 'POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{"type":"stalled","source":"s"}\n';
  const clients = await Promise.all([open(partial), open('')]);
  return clients.map((c) => c.closed);
}

describe('gateway stop with stalled HTTP clients', () => {
  it('SIGTERM exits 0 and closes the stalled connections, keeping what was acknowledged', async () => {
    const port = await freePort();
    const gateway = await startGateway(dir, port);
    const events = Array.from({ length: 20 }, (_, i) => ({ id: `stall-${i}`, source: 'stall', type: 'stall.test' }));
    expect((await postEvents(`${gateway.url}/v1/events`, events)).status).toBe(200);
    const closed = await stalledClients(port);
    // Killed (code null) if the stop hangs for 30 s; it used to hang for ever.
    expect(await gateway.stop(30_000)).toBe(0);
    await Promise.all(closed);

    const again = await startGateway(dir, port);
    const body = await (await fetch(`${again.url}/v1/events?source=stall`)).text();
    expect(body.trim().split('\n')).toHaveLength(20);
    await again.stop();
  }, 60_000);

  it('SIGTERM does not wait for MQTT connections that never completed their CONNECT', async () => {
    const gateway = await startGateway(dir, await freePort());
    const ready = await waitFor(() => gateway.stdout.find((l) => l.startsWith('meteorzx gateway ready:')), 'the ready line');
    const mqttPort = Number(/mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(ready)?.[1]);
    // One sent the first byte of a CONNECT, one nothing: aedes waits 30 s (its connect timeout) for either.
    const clients = await Promise.all(
      ['10', ''].map(
        (hex) =>
          new Promise<{ closed: Promise<void> }>((resolve, reject) => {
            const socket = connect(mqttPort, '127.0.0.1', () => {
              if (hex !== '') socket.write(Buffer.from(hex, 'hex'));
              resolve({ closed: new Promise<void>((r) => socket.once('close', () => r())) });
            });
            socket.on('error', reject);
            sockets.push(socket);
          }),
      ),
    );
    // Let the gateway take both connections before the stop.
    await new Promise((r) => setTimeout(r, 200));
    // Killed (code null) if the stop waits for them; it took 30 s.
    expect(await gateway.stop(20_000)).toBe(0);
    await Promise.all(clients.map((c) => c.closed));
  }, 60_000);

  it('SIGHUP restarts the gateway although a client holds a stalled request', async () => {
    const port = await freePort();
    const gateway = await startGateway(dir, port);
    const closed = await stalledClients(port);
    gateway.proc.kill('SIGHUP');
    await Promise.all(closed);
    await waitFor(async () => (await fetch(`${gateway.url}/healthz`).catch(() => undefined))?.ok === true, 'the restarted gateway', 30_000);
    expect(await gateway.stop(30_000)).toBe(0);
  }, 60_000);
});
