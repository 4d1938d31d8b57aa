import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, postEvents, removeDir, sleep, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';

/**
 * Pull clients that ask for the largest pages (maxBytes 16 MiB) and never
 * read the answer. Each capped page is read whole before it is sent, so
 * before the pull budget every such client pinned up to 16 MiB in the agent
 * for as long as it kept its connection: twenty of them took the agent's
 * heap past 300 MB. Now what all pulls hold is bounded; past it a pull gets
 * 503 + Retry-After, and the budget comes back when the clients go.
 */

let dir: string;
let agent: Agent;
const stalled: Socket[] = [];

beforeAll(async () => {
  dir = await tempDir('agent-pull-stalled');
  agent = await startAgent(dir, { id: 'pull-stalled' });
  // ≈ 40 MB of event text: more than two 16 MiB pages.
  for (let b = 0; b < 5; b++) {
    const events = Array.from({ length: 400 }, (_, i) => ({ type: 'test.fill', data: { i: b * 400 + i, pad: 'x'.repeat(20_000) } }));
    expect((await postEvents(agent.intakeUrl, events)).status).toBe(200);
  }
});

afterAll(async () => {
  for (const s of stalled) s.destroy();
  await killAll();
  await removeDir(dir);
});

async function heapUsed(): Promise<number> {
  const text = await (await fetch(`${agent.pullUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('meteorzx_agent_nodejs_heap_size_used_bytes '));
  return Number(line?.split(' ').at(-1));
}

describe('agent pull API, clients that stop reading', () => {
  it('bounds what stalled 16 MiB pages hold: 503 + Retry-After past the budget, served again once they go', async () => {
    const { port } = new URL(agent.pullUrl);
    for (let i = 0; i < 20; i++) {
      const s = connect(Number(port), '127.0.0.1', () => s.write('GET /v1/events?after=0&limit=10000&maxBytes=16777216 HTTP/1.1\r\nHost: agent\r\n\r\n'));
      s.on('error', () => undefined);
      s.pause(); // never reads
      stalled.push(s);
    }
    await sleep(3000);
    expect(await heapUsed()).toBeLessThan(120 * 1024 * 1024);
    const busy = await fetch(`${agent.pullUrl}/v1/events?after=0&limit=10&maxBytes=16777216`);
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('1');
    expect(((await busy.json()) as { code: string }).code).toBe('METEORZX_PULL_BUSY');
    // Status and metrics hold no page: still served.
    expect((await agent.status()).head).toBe(2000);

    for (const s of stalled.splice(0)) s.destroy();
    const page = await waitFor(async () => {
      const res = await fetch(`${agent.pullUrl}/v1/events?after=0&limit=10&maxBytes=16777216`);
      return res.status === 200 && (await res.text());
    }, 'a pull served once the stalled clients went', 15_000);
    expect(page.trim().split('\n')).toHaveLength(10);
  }, 60_000);
});
