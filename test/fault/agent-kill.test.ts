import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  gatewayEvents,
  holesPerEpoch,
  killAll,
  postEvents,
  removeDir,
  sleep,
  startAgent,
  startGateway,
  tempDir,
  waitFor,
  type Gateway,
} from '../integration/agent-harness.js';

/**
 * Issue 4 done-when: producers POST through the agent's intake at full speed,
 * the agent is SIGKILLed at a random moment and restarted, ROUNDS times. At
 * the end every event that got a 2xx is stored at the gateway exactly once,
 * and each epoch's seqs have no holes. METEORZX_FAULT_ROUNDS=20 for the full run.
 */
const ROUNDS = Number(process.env.METEORZX_FAULT_ROUNDS ?? 3);
const PRODUCERS = 4;
const BATCH = 25;
const SINKS = ['http', 'mqtt'] as const;

let dir: string;
let gateway: Gateway;
let mqttPort: number;

beforeAll(async () => {
  dir = await tempDir('agent-kill');
  mqttPort = await freePort();
  gateway = await startGateway(dir, await freePort(), { mqtt: { listen: `127.0.0.1:${mqttPort}` } });
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

describe.each(SINKS)('agent SIGKILL under load (%s push)', (sink) => {
  it(`loses no acknowledged event and stores none twice over ${ROUNDS} kill rounds`, { timeout: 120_000 + ROUNDS * 30_000 }, async () => {
    const sub = await tempDir(`agent-kill-${sink}`);
    const id = `kill-${sink}`;
    const push =
      sink === 'http'
        ? { http: { url: `${gateway.url}/v1/events` } }
        : { mqtt: { url: `mqtt://127.0.0.1:${mqttPort}` } };
    const config = { id, push: { ...push, batch: { maxEvents: 200, maxWaitMs: 5 }, backoff: { initialMs: 50, maxMs: 500 } } };
    const acked = new Set<string>();
    let attempted = 0;

    for (let round = 0; round < ROUNDS; round += 1) {
      const agent = await startAgent(sub, config);
      let running = true;
      const producer = async (p: number) => {
        for (let n = 0; running; n += 1) {
          const events = Array.from({ length: BATCH }, (_, i) => ({ id: `${id}-r${round}-p${p}-${n}-${i}`, type: 'fault.kill', data: { round, p, n, i } }));
          attempted += BATCH;
          try {
            const res = await postEvents(agent.intakeUrl, events);
            if (res.status === 200) for (const e of events) acked.add(e.id);
          } catch {
            return; // the agent died under us: whatever got no 2xx may or may not be stored
          }
        }
      };
      const producers = Array.from({ length: PRODUCERS }, (_, p) => producer(p));
      await sleep(300 + Math.floor(Math.random() * 1500));
      await agent.kill();
      running = false;
      await Promise.all(producers);
    }

    // A last life with no load: it must push everything still buffered.
    const agent = await startAgent(sub, config);
    await waitFor(async () => {
      const s = await agent.status();
      return s.delivered === s.head && s.push.state === 'idle' ? s : undefined;
    }, 'agent drained its buffer', 60_000);
    const stored = await gatewayEvents(gateway.url, id);
    const storedIds = stored.map((e) => e.id);
    const storedSet = new Set(storedIds);
    const missing = [...acked].filter((x) => !storedSet.has(x));
    expect(acked.size).toBeGreaterThan(0);
    expect(missing).toEqual([]);
    expect(storedIds.length).toBe(storedSet.size);
    for (const [epoch, holes] of holesPerEpoch(stored)) expect({ epoch, holes }).toEqual({ epoch, holes: [] });
    // Resends after a kill land out of order and twice: none of that is a break (gateway chain checks link late events).
    expect(stored.filter((e) => e.ingest.integrity !== 'verified').map((e) => `${e.seq}:${e.ingest.integrity}`)).toEqual([]);
    console.log(`[agent-kill ${sink}] rounds=${ROUNDS} attempted=${attempted} acked=${acked.size} stored=${stored.length}`);
    await agent.stop();
    await removeDir(sub);
  });
});
