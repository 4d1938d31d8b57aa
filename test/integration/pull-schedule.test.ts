import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../protocols/index.js';
import { freePort, gatewayEvents, killAll, postEvents, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { startGateway, type RunningGateway } from './gateway-harness.js';
import { webhookReceiver, type Receiver } from './pull-helpers.js';

/**
 * Issue 5, Done-when 2 (and mixed mode): three agents pulled on a schedule,
 * one of them down. The other two complete; the failed one is retried per
 * policy, shows as failed with its error in /v1/sources and /metrics, raises
 * an alert on the webhook, and completes once it is back. Agent A also
 * pushes in real time (mixed mode): storage holds each of its events once.
 */

const N = 300;
const TRIES = 2; // further attempts after the first
let dir: string;
let gateway: RunningGateway;
let hook: Receiver;
const agents: Record<'a' | 'b' | 'c', Agent | undefined> = { a: undefined, b: undefined, c: undefined };
let cPort: number;
// While C is down its port is held by a listener that drops every connection, so no other
// test's port-0 listener can take it (tests run in parallel) and C can come back on it.
let placeholder: Server | undefined;

async function holdPort(port: number): Promise<Server> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return server;
}

interface PullsView {
  connectors: { url: string; agent: string | null; state: string; lastError: string | null; lastSuccess: string | null; checkpoint: { seq: number } | null }[];
}

async function pulls(): Promise<PullsView> {
  const res = await fetch(`${gateway.httpUrl}/v1/sources`);
  return ((await res.json()) as { pulls: PullsView }).pulls;
}

async function fill(agent: Agent, tag: string): Promise<void> {
  const res = await postEvents(agent.intakeUrl, Array.from({ length: N }, (_, i) => ({ type: 'test.schedule', data: { tag, i } })));
  expect(res.status).toBe(200);
}

function unique(events: readonly StoredEvent[]): number {
  return new Set(events.map((e) => e.id)).size;
}

async function agentDir(name: string): Promise<string> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  return d;
}

beforeAll(async () => {
  dir = await tempDir('pull-schedule');
  hook = await webhookReceiver();
  const gwPort = await freePort();
  cPort = await freePort();
  // A pushes to the gateway too (mixed mode); B and C only buffer.
  agents.a = await startAgent(await agentDir('a'), { id: 'sched-a', push: { http: { url: `http://127.0.0.1:${gwPort}/v1/events` } } });
  agents.b = await startAgent(await agentDir('b'), { id: 'sched-b' });
  agents.c = await startAgent(await agentDir('c'), { id: 'sched-c', pull: { listen: `127.0.0.1:${cPort}` } });
  await Promise.all([fill(agents.a, 'a'), fill(agents.b, 'b'), fill(agents.c, 'c')]);
  await agents.c.stop();
  placeholder = await holdPort(cPort);
  gateway = await startGateway({
    dir,
    config: {
      http: { listen: `127.0.0.1:${gwPort}` },
      pullFrom: [agents.a.pullUrl, agents.b.pullUrl, `http://127.0.0.1:${cPort}`].map((url) => ({ url, every: '1s', retries: { tries: TRIES, delay: '300ms' } })),
      alerts: { webhook: hook.url },
      backfill: { enabled: false },
    },
  });
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  await killAll();
  await hook?.close();
  placeholder?.close();
  await removeDir(dir);
});

describe('scheduled pulls from three agents, one down', () => {
  it('completes the two that are up; mixed push + pull stores each event once', async () => {
    for (const source of ['sched-a', 'sched-b']) {
      await waitFor(async () => (await gatewayEvents(gateway.httpUrl, source)).length >= N, `${source} complete`);
    }
    // Let a few more scheduled runs and pushes overlap before judging duplicates.
    await waitFor(async () => (await pulls()).connectors.every((c) => c.url === `http://127.0.0.1:${cPort}` || (c.checkpoint?.seq ?? 0) >= N), 'checkpoints');
    for (const source of ['sched-a', 'sched-b']) {
      const events = await gatewayEvents(gateway.httpUrl, source);
      expect(events.length).toBe(N);
      expect(unique(events)).toBe(N);
    }
    // Every event of A arrived twice (push and pull): one stored, one counted as a duplicate.
    await waitFor(async () => (await (agents.a as Agent).status()).delivered >= N, 'A pushed everything');
    const res = await fetch(`${gateway.httpUrl}/v1/sources`);
    const sources = (await res.json()) as { sources: { source: string; accepted: number; duplicates: number }[] };
    const a = sources.sources.find((s) => s.source === 'sched-a');
    expect(a?.accepted).toBe(N);
    expect(a?.duplicates).toBe(N);
    expect(unique(await gatewayEvents(gateway.httpUrl, 'sched-a'))).toBe(N);
  }, 60_000);

  it('retries the down one per policy, shows it failed with the error, and alerts', async () => {
    const cUrl = `http://127.0.0.1:${cPort}`;
    const failed = await waitFor(async () => (await pulls()).connectors.find((c) => c.url === cUrl && c.state === 'failed'), 'C failed', 30_000);
    expect(failed.lastError).toMatch(/closed|reset|socket|refused|connect/i);
    const alert = await waitFor(() => hook.bodies.find((b) => b.kind === 'pull-failed' && b.url === cUrl), 'pull-failed webhook');
    expect(String(alert.detail)).toContain(`${1 + TRIES} attempt`);
    // One run = the first attempt + TRIES retries, logged with their numbers.
    const attempts = gateway.logs
      .map((l) => {
        try {
          return JSON.parse(l) as { msg?: string; url?: string; attempt?: number; of?: number };
        } catch {
          return {};
        }
      })
      .filter((l) => l.msg === 'pull failed' && l.url === cUrl);
    expect(attempts.slice(0, 1 + TRIES).map((l) => l.attempt)).toEqual([1, 2, 3]);
    expect(attempts[0]?.of).toBe(1 + TRIES);
    // Each key once per line: pino writes a key bound by a child logger and given again as often as it appears.
    const raw = gateway.logs.find((l) => l.includes('"msg":"pull failed"') && l.includes(cUrl)) ?? '';
    expect([raw.split('"component":').length - 1, raw.split('"url":').length - 1]).toEqual([1, 1]);
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toContain(`meteorzx_gateway_pull_failed{url="${cUrl}"} 1`);
    expect(metrics).toMatch(/meteorzx_gateway_alerts_total\{rule="pull-failed"\} [1-9]/);
  }, 60_000);

  it('completes the failed one after it comes back', async () => {
    await new Promise((r) => placeholder?.close(r));
    placeholder = undefined;
    agents.c = await startAgent(join(dir, 'c'), { id: 'sched-c', pull: { listen: `127.0.0.1:${cPort}` } });
    await waitFor(async () => (await gatewayEvents(gateway.httpUrl, 'sched-c')).length >= N, 'C complete', 60_000);
    const cUrl = `http://127.0.0.1:${cPort}`;
    const ok = await waitFor(async () => (await pulls()).connectors.find((c) => c.url === cUrl && c.state === 'ok'), 'C ok');
    expect(ok.lastError).toBeNull();
    expect(ok.checkpoint?.seq).toBe(N);
    const events = await gatewayEvents(gateway.httpUrl, 'sched-c');
    expect(events.length).toBe(N);
    expect(events.every((e) => e.ingest?.method === 'pull')).toBe(true);
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toContain(`meteorzx_gateway_pull_failed{url="${cUrl}"} 0`);
  }, 90_000);
});
