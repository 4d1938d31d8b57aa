import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, gatewayEvents, killAll, postEvents, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { ndjson, runCli, runProcess, startGateway, type RunningGateway } from './gateway-harness.js';
import { killProcesses } from './kill-procs.js';
import { startMosquitto } from './private-mosquitto.js';

/**
 * An agent pushing over MQTT with `push.batch.maxEvents` (500) above the
 * gateway's `limits.maxBatchEvents` (100). MQTT 3.1.1 has no negative
 * PUBACK: the gateway acknowledged each 500-event publish and kept one
 * rejection record, `batch has more than 100 events`, so the agent counted
 * 1,000 events delivered of which the gateway stored none (reproduced
 * through the CLIs: delivered 1000, stored 0, two rejection records, not
 * even an epoch in GET /v1/sources to show the holes). Through a Mosquitto
 * bridge the agent could not be told in any way.
 */

let dir: string;
let gw: RunningGateway;
const brokers = new Set<ChildProcess>();
beforeAll(async () => {
  dir = await tempDir('mqtt-batch-limit');
  gw = await startGateway({ dir, config: { logLevel: 'warn', limits: { maxBatchEvents: 100 } } });
});
afterAll(async () => {
  await gw?.stop();
  await killProcesses(brokers);
  await killAll();
  if (dir) await removeDir(dir);
});

const N = 1000;

async function pushAll(agent: Agent): Promise<void> {
  const events = Array.from({ length: N }, (_, i) => ({ type: 'batch.limit', data: { i } }));
  for (let from = 0; from < N; from += 500) expect((await postEvents(agent.intakeUrl, events.slice(from, from + 500))).status).toBe(200);
  await waitFor(async () => (await agent.status()).delivered === N, 'the agent delivered every event', 60_000);
}

async function expectAllStored(agentId: string): Promise<void> {
  const stored = await gatewayEvents(gw.httpUrl, agentId);
  expect(stored).toHaveLength(N);
  expect(new Set(stored.map((e) => e.seq)).size).toBe(N);
  expect(stored.every((e) => e.ingest.integrity === 'verified')).toBe(true);
  const sources = (await (await fetch(`${gw.httpUrl}/v1/sources`)).json()) as { epochs: { agent: string; lastSeq: number; gaps: unknown[] }[] };
  expect(sources.epochs.filter((e) => e.agent === agentId).map((e) => [e.lastSeq, e.gaps])).toEqual([[N, []]]);
  const custody = ndjson<{ outcome: string }>(await (await fetch(`${gw.httpUrl}/v1/custody?source=${agentId}`)).text());
  expect(custody.filter((c) => c.outcome === 'rejected')).toEqual([]);
}

describe('agent push.batch.maxEvents above the gateway limits.maxBatchEvents, over MQTT', () => {
  it('directly: the gateway takes each 500-event batch in slices of 100, every event stored once, no gap', async () => {
    const agent = await startAgent(dir, {
      id: 'big-batch-1',
      dataDir: `${dir}/agent-1`,
      push: { mqtt: { url: `mqtt://127.0.0.1:${gw.mqttPort}` }, batch: { maxEvents: 500, maxWaitMs: '2s' } },
    });
    await pushAll(agent);
    await expectAllStored('big-batch-1');
    await agent.stop();
    const verified = await runCli(['verify', gw.httpUrl, '--source', 'big-batch-1']);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
  });

  it('through a Mosquitto bridge (which the gateway could never make split a batch): every event stored', async () => {
    const { proc, port } = await startMosquitto(dir, 'batch-bridge', await freePort(), [
      'allow_anonymous true',
      'persistence false',
      'connection to-gateway',
      `address 127.0.0.1:${gw.mqttPort}`,
      'topic audit/big-batch-2/events out 1',
      'restart_timeout 1 2',
    ]);
    brokers.add(proc);
    const agent = await startAgent(dir, {
      id: 'big-batch-2',
      dataDir: `${dir}/agent-2`,
      push: { mqtt: { url: `mqtt://127.0.0.1:${port}` }, batch: { maxEvents: 500, maxWaitMs: '2s' } },
    });
    await pushAll(agent);
    await waitFor(async () => (await gatewayEvents(gw.httpUrl, 'big-batch-2')).length === N, 'the bridged events at the gateway', 30_000);
    await expectAllStored('big-batch-2');
    await agent.stop();
  });

  it('a plain device publishing an oversize array still gets its PUBACK and one rejection record, not a reconnect loop', async () => {
    const payload = JSON.stringify(Array.from({ length: 150 }, (_, i) => ({ type: 'plain', data: { i, pad: 'p'.repeat(100) } })));
    const pub = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.mqttPort), '-q', '1', '-t', 'audit/plain-dev/events', '-m', payload]);
    expect(pub.code, pub.stderr).toBe(0);
    const custody = ndjson<{ outcome: string; reason?: string }>(await (await fetch(`${gw.httpUrl}/v1/custody?source=plain-dev`)).text());
    expect(custody.map((c) => [c.outcome, c.reason])).toEqual([['rejected', 'batch has more than 100 events (maxBatchEvents)']]);
  });
});
