import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, removeDir, sleep, startAgent, tempDir, waitFor } from './agent-harness.js';

/**
 * The agent keeps its MQTT link up for commands (audit/<id>/cmd) even with
 * nothing to push. Against a broker that refuses it or drops it, it must
 * reconnect on the push link's backoff (push.backoff), not at a fixed pace.
 * The real agent, nothing buffered, against two small brokers that count
 * connection attempts: with push.backoff at one day, exactly one attempt
 * whatever the window.
 */

/** A broker that answers each CONNECT with `returnCode` and then closes the connection; counts connections. */
class HostileBroker {
  connections = 0;
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  constructor(private readonly returnCode: 0 | 5) {}

  async start(): Promise<number> {
    this.server = createServer((socket) => {
      this.connections += 1;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      parser.on('packet', (p: { cmd: string }) => {
        if (p.cmd !== 'connect') return;
        socket.write(mqttPacket.generate({ cmd: 'connack', returnCode: this.returnCode, sessionPresent: false }));
        // Accepted (0): dropped right after, as a broker kicking a duplicate client id does. Refused (5): closed.
        setImmediate(() => socket.destroy());
      });
      socket.on('data', (d: Buffer) => parser.parse(d));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return (this.server?.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}

const WINDOW_MS = 8_000; // longer than the fixed 5 s the link used to be retried at
const brokers = { refuses: new HostileBroker(5), drops: new HostileBroker(0), dropsFastBackoff: new HostileBroker(0) };
const dirs: string[] = [];

beforeAll(async () => {
  for (const [name, broker] of Object.entries(brokers)) {
    const port = await broker.start();
    const dir = await tempDir(`agent-cmd-${name}`);
    dirs.push(dir);
    const backoff = name === 'dropsFastBackoff' ? { initialMs: '20ms', maxMs: '100ms' } : { initialMs: '1d', maxMs: '1d' };
    await startAgent(dir, { id: `cmd-${name}`, push: { mqtt: { url: `mqtt://127.0.0.1:${port}` }, backoff } });
  }
});

afterAll(async () => {
  await killAll();
  for (const b of Object.values(brokers)) await b.stop();
  for (const d of dirs) await removeDir(d);
});

describe('agent command link against a broker that refuses or drops it', () => {
  it('reconnects on the push backoff: one attempt in the window, not one every 5 s', { timeout: 60_000 }, async () => {
    while (brokers.refuses.connections === 0 || brokers.drops.connections === 0) await sleep(20);
    await sleep(WINDOW_MS);
    expect({ refuses: brokers.refuses.connections, drops: brokers.drops.connections }).toEqual({ refuses: 1, drops: 1 });
  });

  it('keeps bringing a dropped link back, on a short backoff', async () => {
    await waitFor(() => brokers.dropsFastBackoff.connections >= 10, '10 connection attempts');
  });
});
