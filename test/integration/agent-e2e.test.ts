import { spawn, spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChainedEvent } from '../../protocols/index.js';
import {
  freePort,
  gatewayEvents,
  holesPerEpoch,
  killAll,
  postEvents,
  removeDir,
  startAgent,
  startGateway,
  tempDir,
  waitFor,
  type Gateway,
} from './agent-harness.js';

/** Agent → real gateway over HTTP and over MQTT, and agent → Mosquitto; each event checked on arrival. */

let dir: string;
let gateway: Gateway;
let mqttPort: number;

beforeAll(async () => {
  dir = await tempDir('agent-e2e');
  mqttPort = await freePort();
  gateway = await startGateway(dir, await freePort(), { mqtt: { listen: `127.0.0.1:${mqttPort}` } });
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

function batch(prefix: string, n: number, from = 0) {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${from + i}`, type: 'e2e.test', actor: 'alice', data: { i: from + i } }));
}

async function produce(url: string, prefix: string, batches: number, size: number): Promise<string[]> {
  const ids: string[] = [];
  for (let b = 0; b < batches; b += 1) {
    const events = batch(prefix, size, b * size);
    const res = await postEvents(url, events);
    expect(res.status).toBe(200);
    expect(res.body.accepted).toBe(size);
    ids.push(...events.map((e) => e.id));
  }
  return ids;
}

describe('agent end to end', () => {
  it('an event of exactly maxEventBytes as sent is stored at the gateway, over HTTP and MQTT, with the fields its agent added', async () => {
    // The agent checks the size as received, then adds id, source, time, agent, epoch, seq, prev and hash:
    // the gateway, which checks the same limit, must allow a chained event those bytes.
    const shell = JSON.stringify({ type: 'edge.size', data: { pad: '' } });
    const event = { type: 'edge.size', data: { pad: 'x'.repeat(65_536 - Buffer.byteLength(shell)) } };
    expect(Buffer.byteLength(JSON.stringify(event))).toBe(65_536);
    for (const [id, push] of [
      ['e2e-edge-http', { http: { url: `${gateway.url}/v1/events` } }],
      ['e2e-edge-mqtt', { mqtt: { url: `mqtt://127.0.0.1:${mqttPort}` } }],
    ] as const) {
      const sub = await tempDir(id);
      const agent = await startAgent(sub, { id, push });
      expect((await postEvents(agent.intakeUrl, [event])).body.accepted).toBe(1);
      await waitFor(async () => (await agent.status()).delivered === 1, `${id} delivered`);
      const stored = await gatewayEvents(gateway.url, id);
      expect(stored.map((e) => [e.type, e.ingest.integrity])).toEqual([['edge.size', 'verified']]);
      expect(await agent.stop()).toBe(0);
      await removeDir(sub);
    }
  });


  it('an event longer once stored than the gateway takes is refused by the agent with a per-event error, not acknowledged then lost', async () => {
    // `1e20` is 4 characters as sent (curl, verbatim) and 21 in canonical JSON: 4,000 of them make a 20 KB
    // event an 88 KB line, over the gateway's 64 KiB + 1 KiB for a chained event.
    const expanding = `{"type":"edge.expand","data":{"n":[${Array.from({ length: 4000 }, () => '1e20').join(',')}]}}`;
    const body = [JSON.stringify({ type: 'edge.before' }), expanding, JSON.stringify({ type: 'edge.after' })].join('\n');
    const sub = await tempDir('e2e-expand');
    const file = join(sub, 'body.ndjson');
    await writeFile(file, body);
    const agent = await startAgent(sub, { id: 'e2e-expand', push: { http: { url: `${gateway.url}/v1/events` } } });
    const curl = spawnSync('curl', ['-sS', '-H', 'content-type: application/x-ndjson', '--data-binary', `@${file}`, agent.intakeUrl], { encoding: 'utf8' });
    expect(curl.status).toBe(0);
    const answer = JSON.parse(curl.stdout) as { accepted: number; rejected: { index: number; error: string }[] };
    expect(answer.accepted).toBe(2);
    expect(answer.rejected.map((r) => r.index)).toEqual([1]);
    expect(answer.rejected[0]?.error).toMatch(/^event is \d+ bytes once stored .*over the limit of 66560/);
    await waitFor(async () => (await agent.status()).delivered === 2, 'e2e-expand delivered');
    // Nothing refused on push: no `gateway-refused` gap event follows the two.
    const stored = await gatewayEvents(gateway.url, 'e2e-expand');
    expect(stored.map((e) => [e.type, e.seq, e.ingest.integrity])).toEqual([
      ['edge.before', 1, 'verified'],
      ['edge.after', 2, 'verified'],
    ]);
    expect(await agent.stop()).toBe(0);
    await removeDir(sub);
  });

  it('HTTP push: every acknowledged event is stored at the gateway exactly once, chained and verified', async () => {
    const sub = await tempDir('agent-e2e-http');
    const id = 'e2e-http';
    const agent = await startAgent(sub, { id, push: { http: { url: `${gateway.url}/v1/events` }, batch: { maxEvents: 200, maxWaitMs: 20 } } });
    const ids = await produce(agent.intakeUrl, id, 20, 100);
    await waitFor(async () => {
      const s = await agent.status();
      return s.head === 2000 && s.delivered === 2000 && s.push.state === 'idle';
    }, 'agent delivered 2000');
    const stored = await gatewayEvents(gateway.url, id);
    expect(stored.map((e) => e.id).sort()).toEqual([...ids].sort());
    expect([...holesPerEpoch(stored).values()]).toEqual([[]]);
    expect(stored.every((e) => e.ingest.integrity === 'verified' && e.ingest.method === 'http')).toBe(true);
    expect(await agent.metric('meteorzx_agent_events_out_total')).toBe(2000);
    expect(await agent.stop()).toBe(0);
    await removeDir(sub);
  });

  it('an agent restarted under a new id goes on in its epoch after a gap event the gateway takes as reported: no hole to alert on or backfill', async () => {
    const sub = await tempDir('agent-e2e-rename');
    const push = { http: { url: `${gateway.url}/v1/events` }, batch: { maxEvents: 200, maxWaitMs: 20 } };
    const delivered = (agent: Awaited<ReturnType<typeof startAgent>>, head: number) =>
      waitFor(async () => {
        const s = await agent.status();
        return s.head === head && s.delivered === head && s.push.state === 'idle';
      }, `agent delivered ${head}`);
    const before = await startAgent(sub, { id: 'e2e-host-old', push });
    await produce(before.intakeUrl, 'rename-a', 1, 50);
    await delivered(before, 50);
    expect(await before.stop()).toBe(0);
    // The host was renamed (the default id is the host name): same buffer, same epoch.
    const after = await startAgent(sub, { id: 'e2e-host-new', push });
    await produce(after.intakeUrl, 'rename-b', 1, 20);
    await delivered(after, 71);
    const epoch = (await after.status()).epoch;
    const view = (await (await fetch(`${gateway.url}/v1/sources`)).json()) as { epochs: { agent: string; epoch: string; lastSeq: number; gaps: { from: number; to: number; reportedByAgent?: boolean }[] }[] };
    const chains = view.epochs.filter((e) => e.epoch === epoch).map((e) => ({ agent: e.agent, lastSeq: e.lastSeq, gaps: e.gaps.map((g) => ({ from: g.from, to: g.to, reportedByAgent: g.reportedByAgent })) }));
    // Before: the new id's chain had an open hole 1..50 (a seq-gap alert after backfill.grace, then backfill
    // asking the agent for seqs it serves under the old id, and recording them lost).
    expect(chains.sort((a, b) => a.agent.localeCompare(b.agent))).toEqual([
      { agent: 'e2e-host-new', lastSeq: 71, gaps: [{ from: 1, to: 50, reportedByAgent: true }] },
      { agent: 'e2e-host-old', lastSeq: 50, gaps: [] },
    ]);
    const renamed = (await gatewayEvents(gateway.url, 'e2e-host-new')).find((e) => e.type === 'meteorzx.gap');
    expect(renamed).toMatchObject({ seq: 51, agent: 'e2e-host-new', data: { reason: 'agent-renamed', from: 1, to: 50, count: 50, renamedFrom: 'e2e-host-old' }, ingest: { integrity: 'verified' } });
    expect(after.logs.some((l) => l.includes('the agent id changed from e2e-host-old to e2e-host-new'))).toBe(true);
    expect(await after.stop()).toBe(0);
    await removeDir(sub);
  });

  it('MQTT push to the gateway broker: every event arrives once, and SIGTERM exits 0 keeping the cursor', async () => {
    const sub = await tempDir('agent-e2e-mqtt');
    const id = 'e2e-mqtt';
    const config = { id, push: { mqtt: { url: `mqtt://127.0.0.1:${mqttPort}` }, batch: { maxEvents: 100, maxWaitMs: 20 } } };
    let agent = await startAgent(sub, config);
    const ids = await produce(agent.intakeUrl, id, 10, 100);
    await waitFor(async () => (await agent.status()).delivered === 1000, 'agent delivered 1000');
    expect(await agent.stop()).toBe(0);
    // Restarted: head and delivered come back from the buffer's keys, nothing is resent.
    agent = await startAgent(sub, config);
    const status = await agent.status();
    expect(status).toMatchObject({ head: 1000, delivered: 1000 });
    ids.push(...(await produce(agent.intakeUrl, `${id}-after-restart`, 1, 50)));
    await waitFor(async () => (await agent.status()).delivered === 1050, 'agent delivered 1050');
    const stored = await gatewayEvents(gateway.url, id);
    expect(stored.map((e) => e.id).sort()).toEqual([...ids].sort());
    expect(stored.every((e) => e.ingest.method === 'mqtt' && e.ingest.integrity === 'verified')).toBe(true);
    expect([...holesPerEpoch(stored).values()]).toEqual([[]]);
    expect(await agent.stop()).toBe(0);
    await removeDir(sub);
  });

  it('MQTT push to Mosquitto: mosquitto_sub sees every seq, the retained online status and the offline will', async () => {
    const sub = await tempDir('agent-e2e-mosq');
    const id = `e2e-mosq-${process.pid}`;
    const lines: string[] = [];
    const subscriber = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', '1883', '-v', '-q', '1', '-t', `audit/${id}/#`]);
    let partial = '';
    subscriber.stdout.on('data', (c: Buffer) => {
      const parts = (partial + c.toString()).split('\n');
      partial = parts.pop() ?? '';
      lines.push(...parts);
    });
    try {
      await waitFor(() => {
        spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-q', '1', '-t', `audit/${id}/cmd`, '-m', 'marker']);
        return lines.length > 0;
      }, 'mosquitto_sub ready');
      const agent = await startAgent(sub, { id, push: { mqtt: { url: 'mqtt://127.0.0.1:1883' }, batch: { maxEvents: 50, maxWaitMs: 10 } } });
      await produce(agent.intakeUrl, id, 5, 100);
      await waitFor(async () => (await agent.status()).delivered === 500, 'delivered 500 to Mosquitto');
      const prefix = `audit/${id}/events `;
      const seqs = lines.filter((l) => l.startsWith(prefix)).flatMap((l) => (JSON.parse(l.slice(prefix.length)) as ChainedEvent[]).map((e) => e.seq));
      expect([...new Set(seqs)].sort((a, b) => a - b)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
      expect(lines.some((l) => l.startsWith(`audit/${id}/status `) && l.includes('"online"'))).toBe(true);
      // SIGKILL: no clean disconnect, so the broker publishes the will.
      await agent.kill();
      await waitFor(() => lines.some((l) => l.startsWith(`audit/${id}/status `) && l.includes('"offline"')), 'offline will', 90_000);
    } finally {
      subscriber.kill('SIGTERM');
      spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-t', `audit/${id}/status`, '-r', '-n']);
      await removeDir(sub);
    }
  });
});
