import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../protocols/index.js';
import {
  freePort,
  gatewayEvents,
  killAll,
  removeDir,
  sleep,
  startAgent,
  startGateway,
  tempDir,
  waitFor,
  type Agent,
} from './agent-harness.js';

/**
 * A full buffer under each policy, with the gateway away so nothing drains,
 * then the gateway started and the result read back from it:
 * block → 503 + Retry-After and nothing lost once it drains;
 * drop-oldest → every POST accepted, and a gap event naming exactly the seqs that never arrive;
 * reject → 507 for new events only, everything accepted before still arrives.
 */

let dir: string;
/** Each case's own data directory, removed with the shared one. */
const subs: string[] = [];
beforeAll(async () => {
  dir = await tempDir('agent-full');
});
afterAll(async () => {
  await killAll();
  await removeDir(dir);
  for (const sub of subs) await removeDir(sub);
});

// Random payloads barely compress, so a few hundred events fill 32 KiB of blocks.
const event = (id: string) => ({ id, type: 'fault.full', data: { pad: randomBytes(150).toString('base64') } });

async function post(agent: Agent, ids: string[]) {
  const res = await fetch(agent.intakeUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: ids.map((id) => JSON.stringify(event(id))).join('\n'),
  });
  const body = (await res.json()) as Record<string, unknown>;
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body };
}

async function setup(name: string, whenFull: string) {
  const sub = await tempDir(`agent-full-${name}`);
  subs.push(sub);
  const port = await freePort();
  const agent = await startAgent(sub, {
    id: `full-${name}`,
    limits: { maxEventBytes: '2KiB' },
    buffer: { maxBytes: '32KiB', whenFull },
    push: { http: { url: `http://127.0.0.1:${port}/v1/events` }, batch: { maxEvents: 20, maxWaitMs: 5 }, backoff: { initialMs: 50, maxMs: 200 }, breaker: { threshold: 100, cooldownMs: 100 } },
  });
  return { sub, port, agent };
}

async function drain(agent: Agent) {
  return waitFor(async () => {
    const s = await agent.status();
    return s.delivered === s.head && s.push.state === 'idle' ? s : undefined;
  }, 'agent drained', 40_000).catch(async (err: Error) => {
    throw new Error(`${err.message}; agent status ${JSON.stringify(await agent.status())}`);
  });
}

const isGap = (e: StoredEvent) => e.type === 'meteorzx.gap';

/** [1,2,3,7,8] → ['1-3', '7-8']: readable when a gap does not match. */
function ranges(seqs: number[]): string[] {
  const out: string[] = [];
  const sorted = [...seqs].sort((a, b) => a - b);
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === (sorted[j] as number) + 1) j += 1;
    out.push(`${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return out;
}

describe('agent buffer full', () => {
  it('block: the intake answers 503 + Retry-After, and nothing is lost once the gateway drains it', async () => {
    const { sub, port, agent } = await setup('block', 'block');
    const acked: string[] = [];
    let refused: { status: number; retryAfter: string | null; body: Record<string, unknown> } | undefined;
    for (let n = 0; n < 400 && refused === undefined; n += 1) {
      const ids = Array.from({ length: 5 }, (_, i) => `block-${n}-${i}`);
      const res = await post(agent, ids);
      if (res.status === 200) acked.push(...ids);
      else refused = res;
    }
    expect(refused?.status).toBe(503);
    expect(refused?.retryAfter).toBe('1');
    expect(refused?.body.code).toBe('METEORZX_BUFFER_FULL');
    // Before: 0 while the intake answered 503, so an alert on the gauge never fired for HTTP producers.
    const blocked = () => agent.metric('meteorzx_agent_intake_blocked{intake="http"}');
    expect(await blocked()).toBe(1);
    const gateway = await startGateway(sub, port);
    // The producer retries what was refused until the drained buffer takes it.
    const retried = ['block-retry-0', 'block-retry-1'];
    await waitFor(async () => (await post(agent, retried)).status === 200, 'accepted again after draining');
    acked.push(...retried);
    await drain(agent);
    expect(await blocked()).toBe(0);
    const stored = await gatewayEvents(gateway.url, 'full-block');
    expect(stored.filter(isGap)).toEqual([]);
    expect(stored.map((e) => e.id).sort()).toEqual([...acked].sort());
    await agent.stop();
    await gateway.stop();
  });

  // Posts `batches` × 5 events with the gateway away, then checks at the gateway that the gap events
  // name exactly the seqs that never arrived. Capacity is about 150 events.
  async function dropOldest(name: string, batches: number) {
    const { sub, port, agent } = await setup(name, 'drop-oldest');
    for (let n = 0; n < batches; n += 1) {
      const res = await post(agent, Array.from({ length: 5 }, (_, i) => `${name}-${n}-${i}`));
      expect(res.status).toBe(200);
    }
    const gateway = await startGateway(sub, port);
    const final = await drain(agent);
    const stored = await gatewayEvents(gateway.url, `full-${name}`);
    const gaps = stored.filter(isGap);
    expect(gaps.length).toBeGreaterThan(0);
    const named = new Set<number>();
    for (const g of gaps) {
      const data = g.data as { from: number; to: number; reason: string };
      expect(data.reason).toBe('buffer-full-drop-oldest');
      for (let s = data.from; s <= data.to; s += 1) named.add(s);
    }
    const arrived = new Set(stored.map((e) => e.seq));
    const missing: number[] = [];
    for (let s = 1; s <= final.head; s += 1) if (!arrived.has(s)) missing.push(s);
    expect(missing.length).toBeGreaterThan(0);
    expect(ranges([...named])).toEqual(ranges(missing));
    await agent.stop();
    await gateway.stop();
  }

  // 250 events into room for about 120: drops continue long enough that the first gap events are
  // themselves among the oldest blocks, so this also checks that their ranges are not lost with them.
  it('drop-oldest: every POST is accepted and the gap events name exactly the dropped seqs', async () => {
    await dropOldest('drop', 50);
  });

  it('reject: new events get 507 while full; everything accepted before arrives, nothing else', async () => {
    const { sub, port, agent } = await setup('reject', 'reject');
    const acked: string[] = [];
    let refused = 0;
    for (let n = 0; n < 400 && refused < 3; n += 1) {
      const ids = Array.from({ length: 5 }, (_, i) => `reject-${n}-${i}`);
      const res = await post(agent, ids);
      if (res.status === 200) acked.push(...ids);
      else {
        expect(res.status).toBe(507);
        expect(res.body.code).toBe('METEORZX_BUFFER_REJECTED');
        refused += 1;
      }
    }
    expect(refused).toBe(3);
    expect(await agent.metric('meteorzx_agent_append_failures_total{code="METEORZX_BUFFER_REJECTED"}')).toBe(3);
    expect(await agent.metric('meteorzx_agent_intake_blocked{intake="http"}')).toBe(1);
    const gateway = await startGateway(sub, port);
    await drain(agent);
    await waitFor(async () => (await agent.metric('meteorzx_agent_intake_blocked{intake="http"}')) === 0, 'intake_blocked back to 0 once drained');
    await sleep(200);
    const stored = await gatewayEvents(gateway.url, 'full-reject');
    expect(stored.filter(isGap)).toEqual([]);
    expect(stored.map((e) => e.id).sort()).toEqual([...acked].sort());
    await agent.stop();
    await gateway.stop();
  });
});
