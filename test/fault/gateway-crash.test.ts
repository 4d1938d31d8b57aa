import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ndjson, removeDir, runCli, startGateway, tempDir, type RunningGateway } from '../integration/gateway-harness.js';

/**
 * Issue 3 fault test / DESIGN §7: kill -9 the gateway at random moments
 * while several MQTT.js clients publish QoS 1 at full speed. After restart,
 * every PUBACKed event is stored, and nothing is stored twice — also when
 * the clients resend what was in flight at the kill.
 */
const ROUNDS = Number(process.env.METEORZX_FAULT_ROUNDS ?? 3);
const CLIENTS = Number(process.env.METEORZX_FAULT_CLIENTS ?? 4);
const WINDOW = 64; // in-flight publishes per client

let dir: string;
let gw: RunningGateway | undefined;

beforeAll(async () => {
  dir = await tempDir('meteorzx-gw-fault-');
});

afterAll(async () => {
  await gw?.kill9();
  await removeDir(dir);
});

interface Ledger {
  /** Ids whose PUBACK arrived. */
  acked: Set<string>;
  /** Payloads sent but not acked when the connection died: resent next round, as a client would. */
  unacked: Map<string, string>;
  next: number;
}

/** One client publishing as fast as its window allows until the connection dies. */
function publisher(port: number, clientNo: number, ledger: Ledger, resend: [string, string][]): { client: MqttClient; done: Promise<void> } {
  const source = `crash-dev-${clientNo}`;
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: `${source}-${Date.now()}`, reconnectPeriod: 0, clean: true });
  const done = new Promise<void>((resolve) => {
    let inflight = 0;
    let dead = false;
    const send = (id: string, payload: string) => {
      inflight += 1;
      ledger.unacked.set(id, payload);
      client.publish(`audit/${source}/events`, payload, { qos: 1 }, (err) => {
        inflight -= 1;
        if (!err && !dead) {
          ledger.acked.add(id);
          ledger.unacked.delete(id);
        }
        pump();
      });
    };
    const pump = () => {
      while (!dead && inflight < WINDOW) {
        const again = resend.shift();
        if (again) {
          send(again[0], again[1]);
          continue;
        }
        const id = `${source}-${ledger.next++}`;
        send(id, JSON.stringify({ id, type: 'crash.test', data: { pad: 'x'.repeat(200) } }));
      }
    };
    client.on('connect', pump);
    const stop = () => {
      dead = true;
      resolve();
    };
    client.on('close', stop);
    client.on('error', stop);
  });
  return { client, done };
}

describe('gateway crash safety', () => {
  it(`loses no PUBACKed event and stores none twice across ${ROUNDS} kill -9 rounds`, { timeout: 60_000 + ROUNDS * 20_000 }, async () => {
    const ledgers: Ledger[] = Array.from({ length: CLIENTS }, () => ({ acked: new Set(), unacked: new Map(), next: 0 }));
    for (let round = 0; round < ROUNDS; round++) {
      gw = await startGateway({ dir, config: { logLevel: 'warn' } });
      const pubs = ledgers.map((ledger, i) => publisher(gw!.mqttPort, i, ledger, [...ledger.unacked.entries()]));
      const before = ledgers.reduce((n, l) => n + l.acked.size, 0);
      // A random moment, after the clients are up and acks are flowing.
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 1200));
      if (process.env.METEORZX_FAULT_DEBUG) console.log(`round ${round}: killing`);
      await gw.kill9();
      if (process.env.METEORZX_FAULT_DEBUG) console.log(`round ${round}: killed`);
      await Promise.all(pubs.map((p) => p.done));
      for (const p of pubs) p.client.end(true);
      const after = ledgers.reduce((n, l) => n + l.acked.size, 0);
      if (process.env.METEORZX_FAULT_DEBUG) console.log(`round ${round}: acked ${after - before}`);
      expect(after, `round ${round}: no publish was acked before the kill`).toBeGreaterThan(before);
    }

    // Restart once more, let the clients resend what was in flight at the last kill, then read everything back.
    gw = await startGateway({ dir, config: { logLevel: 'warn' } });
    for (const [i, ledger] of ledgers.entries()) {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { reconnectPeriod: 0 });
      for (const [id, payload] of ledger.unacked) {
        await c.publishAsync(`audit/crash-dev-${i}/events`, payload, { qos: 1 });
        ledger.acked.add(id);
      }
      await c.endAsync();
    }
    const q = await runCli(['query', gw.httpUrl, '--type', 'crash.test']);
    expect(q.code, q.stderr).toBe(0);
    const rows = ndjson<{ id: string; source: string }>(q.stdout);
    const stored = rows.map((e) => e.id);
    const unique = new Set(stored);
    expect(stored.length - unique.size, 'events stored more than once').toBe(0);
    const acked = ledgers.flatMap((l) => [...l.acked]);
    const lost = acked.filter((id) => !unique.has(id));
    expect(lost, 'acknowledged events missing after restart').toEqual([]);
    expect(acked.length).toBeGreaterThan(ROUNDS * CLIENTS);

    // The per-source registry survives the kills too: its keys are checkpointed about once a second, and what
    // came after the last checkpoint is counted again from the custody ledger at start.
    const registry = (await (await fetch(`${gw.httpUrl}/v1/sources`)).json()) as { sources: { source: string; accepted: number }[] };
    for (let i = 0; i < CLIENTS; i++) {
      const source = `crash-dev-${i}`;
      expect(registry.sources.find((s) => s.source === source)?.accepted, `${source}: accepted count`).toBe(rows.filter((e) => e.source === source).length);
    }

    const verify = await runCli(['verify', gw.httpUrl]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    await gw.stop();
  });
});
