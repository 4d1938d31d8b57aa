import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, removeDir, sleep, startAgent, tempDir, waitFor } from './agent-harness.js';
import { FakeMqttBroker } from './fake-mqtt-broker.js';

/**
 * The agent keeps its MQTT link up for commands (audit/<id>/cmd) even with
 * nothing to push. Against a broker that refuses it or drops it, it must
 * reconnect on the push link's backoff (push.backoff), not at a fixed pace.
 * The real agent, nothing buffered, against two small brokers that count
 * connection attempts: with push.backoff at one day, exactly one attempt
 * whatever the window.
 */

const WINDOW_MS = 8_000; // longer than the fixed 5 s the link used to be retried at
// Refused (5): as a broker with a wrong password. Accepted then dropped (0): as a broker kicking a duplicate client id.
const hostile = (returnCode: 0 | 5) => new FakeMqttBroker(() => 'ack', { returnCode, closeAfterConnack: true });
const brokers = { refuses: hostile(5), drops: hostile(0), dropsFastBackoff: hostile(0) };
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
