import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  gatewayEvents,
  killAll,
  postEvents,
  removeDir,
  startAgent,
  startGateway,
  tempDir,
  waitFor,
  type Gateway,
} from './agent-harness.js';

/** The push sinks against the real gateway when it answers in less common ways. */

let dir: string;
let gateway: Gateway;

beforeAll(async () => {
  dir = await tempDir('agent-push-answers');
  gateway = await startGateway(dir, await freePort());
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

const events = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${i}`, type: 'push.answers', data: { i } }));

describe('agent push against uncommon gateway answers', () => {
  it('a push URL the gateway answers 404 to loses nothing: no event skipped, no gap event; fixed, every event arrives once', async () => {
    const sub = await tempDir('push-404');
    const id = 'push-404';
    const fast = { batch: { maxEvents: 4, maxWaitMs: 0 }, backoff: { initialMs: 1, maxMs: 20 }, breaker: { threshold: 3, cooldownMs: 20 } };
    const agent = await startAgent(sub, { id, push: { http: { url: `${gateway.url}/v1/event` }, ...fast } });
    expect((await postEvents(agent.intakeUrl, events(id, 10))).body.accepted).toBe(10);
    // Every batch split down to single events and each of those refused again.
    await waitFor(async () => (await agent.metric('meteorzx_agent_push_sends_total{result="permanent"}')) >= 60, '60 refused sends');
    const status = await agent.status();
    expect([status.head, status.delivered]).toEqual([10, 0]); // no gap event appended, nothing passed as delivered
    expect(['backoff', 'open', 'half-open']).toContain(status.push.state);
    expect(status.push.lastError).toMatch(/^gateway answered 404/);
    expect(await agent.metric('meteorzx_agent_events_skipped_total')).toBe(0);
    expect(await agent.stop()).toBe(0);

    const fixed = await startAgent(sub, { id, push: { http: { url: `${gateway.url}/v1/events` }, ...fast } });
    await waitFor(async () => {
      const s = await fixed.status();
      return s.delivered === 10 && s.push.state === 'idle';
    }, 'delivered 10 after the URL was fixed');
    const stored = await gatewayEvents(gateway.url, id);
    expect(stored.map((e) => e.id).sort()).toEqual(events(id, 10).map((e) => e.id).sort());
    expect(stored.every((e) => e.type === 'push.answers')).toBe(true);
    expect(await fixed.stop()).toBe(0);
    await removeDir(sub);
  });
});
