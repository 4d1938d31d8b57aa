import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainEvent } from '../../protocols/hash-chain.js';
import type { SourcesResponse } from '../../protocols/index.js';
import { freePort, gatewayEvents, killAll, parseLine, removeDir, startAgent, startGateway, tempDir, waitFor, type Gateway } from './agent-harness.js';

/**
 * The gateway links a late batch to the chain around it (DESIGN §4): an
 * event altered in transit and hashed again (the hash is unkeyed) is found
 * when its batch lands after a later one, as it is in order. The lines are
 * real agent lines, read from each agent's pull API; the agents push
 * nowhere, the test posts their lines to the gateway in the order it chooses.
 */

let dir: string;
let port: number;
let gw: Gateway;
const lines = new Map<string, string[]>();

async function agentLines(id: string): Promise<string[]> {
  await mkdir(join(dir, id));
  const agent = await startAgent(join(dir, id), { id });
  const events = Array.from({ length: 30 }, (_, i) => ({ type: 'door.open', actor: 'alice', data: { n: i + 1 } }));
  const res = await fetch(agent.intakeUrl, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: events.map((e) => JSON.stringify(e)).join('\n') });
  expect(res.status).toBe(200);
  const out = await waitFor(async () => {
    const ls = (await (await fetch(`${agent.pullUrl}/v1/events?after=0&limit=100`)).text()).split('\n').filter((l) => l.trim() !== '');
    return ls.length === 30 ? ls : undefined;
  }, `${id} lines`);
  await agent.stop();
  return out;
}

const post = async (body: string[]): Promise<unknown> =>
  (await fetch(`${gw.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: body.join('\n') })).json();

/** Seqs `a`..`b` of an agent's lines; `change` replaces seq `at` by a forged, re-hashed copy. */
function range(id: string, a: number, b: number, change?: { at: number; fields: Record<string, unknown> }): string[] {
  return (lines.get(id) as string[]).slice(a - 1, b).map((line, i) => {
    if (change?.at !== a + i) return line;
    const original = JSON.parse(line) as Parameters<typeof chainEvent>[0];
    return JSON.stringify(chainEvent({ ...original, ...change.fields }, original.prev));
  });
}

async function verdicts(id: string): Promise<{ broken: number[]; verified: number; total: number }> {
  const stored = await gatewayEvents(gw.url, id);
  return {
    broken: stored.filter((e) => e.ingest.integrity === 'broken').map((e) => e.seq as number).sort((x, y) => x - y),
    verified: stored.filter((e) => e.ingest.integrity === 'verified').length,
    total: stored.length,
  };
}

async function gapsOf(id: string): Promise<unknown[]> {
  const sources = (await (await fetch(`${gw.url}/v1/sources`)).json()) as SourcesResponse;
  return sources.epochs.filter((e) => e.agent === id).flatMap((e) => e.gaps);
}

const alerts = (): string[] => gw.logs.map(parseLine).flatMap((l) => (l?.alert === 'chain-break' ? [String(l.detail)] : []));

beforeAll(async () => {
  dir = await tempDir('gateway-chain');
  port = await freePort();
  gw = await startGateway(dir, port);
  const ids = ['ag-1', 'ag-2', 'ag-3', 'ag-4', 'ag-5'];
  for (const [i, ls] of (await Promise.all(ids.map(agentLines))).entries()) lines.set(ids[i] as string, ls);
}, 60_000);

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

describe('late batches are linked to the chain around them', () => {
  it('a forged, re-hashed event in a late batch: the next seq, whose prev no longer matches, is broken', async () => {
    await post(range('ag-1', 1, 10));
    await post(range('ag-1', 21, 30));
    await post(range('ag-1', 11, 20, { at: 15, fields: { actor: 'mallory' } }));
    // As in order: seq 15's content matches its (new) hash; seq 16's prev is the hash of the genuine 15.
    expect(await verdicts('ag-1')).toEqual({ broken: [16], verified: 29, total: 30 });
    expect(await gapsOf('ag-1')).toEqual([]);
    await waitFor(() => alerts().length > 0, 'chain-break alert');
    expect(alerts()).toEqual(['seq 16: prev does not match the hash of seq 15']);
  });

  it('out of order, resent and repeated batches without tampering stay verified', async () => {
    await post(range('ag-2', 21, 30));
    await post(range('ag-2', 1, 5));
    await post(range('ag-2', 11, 20));
    await post(range('ag-2', 6, 10));
    await post(range('ag-2', 5, 25)); // a resend after an agent crash: duplicates by id
    expect(await verdicts('ag-2')).toEqual({ broken: [], verified: 30, total: 30 });
    expect(await gapsOf('ag-2')).toEqual([]);
    expect(alerts()).toHaveLength(1);
  });

  it('the edges of a gap outlive a gateway restart: a forged top of a late batch is itself broken', async () => {
    await post(range('ag-3', 1, 10));
    await post(range('ag-3', 21, 30));
    await gw.kill();
    gw = await startGateway(dir, port);
    await post(range('ag-3', 11, 20, { at: 20, fields: { actor: 'mallory' } }));
    // Seq 21, stored, names the genuine 20 as its prev: the late 20 is the one that does not fit.
    expect(await verdicts('ag-3')).toEqual({ broken: [20], verified: 29, total: 30 });
    await waitFor(() => alerts().length > 0, 'chain-break alert');
    expect(alerts()).toEqual(['seq 20: hash does not match the prev of seq 21']);
  });

  it('the edges of a gap outlive a restart also when the highest seq arrived unchained', async () => {
    await post(range('ag-4', 1, 10));
    await post(range('ag-4', 21, 29));
    // Seq 30 without its chain fields (agent, epoch and seq kept): the registry's head has no hash.
    const { hash: _hash, prev: _prev, ...unchained } = JSON.parse(range('ag-4', 30, 30)[0] as string) as Record<string, unknown>;
    await post([JSON.stringify(unchained)]);
    await gw.kill();
    gw = await startGateway(dir, port);
    await post(range('ag-4', 11, 20, { at: 20, fields: { actor: 'mallory' } }));
    // Before the fix the restarted gateway took the epoch for a new one: the gap's edges unused, seq 20 'verified'.
    expect(await verdicts('ag-4')).toEqual({ broken: [20], verified: 28, total: 30 });
    await waitFor(() => alerts().length > 0, 'chain-break alert');
    expect(alerts()).toEqual(['seq 20: hash does not match the prev of seq 21']);
  });
});

describe('a second event at a seq the chain already holds (a forked chain)', () => {
  it('is stored broken with a chain-break alert, also after a restart; a resend of the genuine event stays a duplicate', async () => {
    await post(range('ag-5', 1, 30));
    expect(await verdicts('ag-5')).toEqual({ broken: [], verified: 30, total: 30 });
    // The genuine seqs 10-12 again (an agent crash resend): duplicates by id, nothing flagged.
    expect(await post(range('ag-5', 10, 12))).toMatchObject({ accepted: 0, duplicates: 3 });
    // Another event at seq 12, hashed right and linked to the genuine 11: only its id tells it apart.
    const fork = range('ag-5', 12, 12, { at: 12, fields: { id: 'forged-12', actor: 'mallory' } });
    expect(await post(fork)).toMatchObject({ accepted: 1, duplicates: 0 });
    expect(await verdicts('ag-5')).toEqual({ broken: [12], verified: 30, total: 31 });
    const forkAlerts = (): string[] => alerts().filter((a) => a.includes('the chain already holds this seq'));
    await waitFor(() => forkAlerts().length > 0, 'chain-break alert');
    expect(forkAlerts()).toEqual([
      "seq 12: the chain already holds this seq, and this event's id is not stored: a second event at that position (or a resend older than the dedup window)",
    ]);
    // After a restart the chain's head and the ids come from disk.
    await gw.kill();
    gw = await startGateway(dir, port);
    expect(await post(range('ag-5', 5, 5, { at: 5, fields: { id: 'forged-5' } }))).toMatchObject({ accepted: 1 });
    expect(await post(range('ag-5', 4, 6))).toMatchObject({ accepted: 0, duplicates: 3 });
    expect((await verdicts('ag-5')).broken).toEqual([5, 12]);
    await waitFor(() => forkAlerts().length > 0, 'chain-break alert after the restart');
    expect(forkAlerts()).toEqual([expect.stringMatching(/^seq 5: the chain already holds this seq/)]);
  });
});
