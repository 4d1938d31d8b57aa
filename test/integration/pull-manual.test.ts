import { connect, createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayEvents, killAll, postEvents, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { runCli, startGateway, type RunningGateway } from './gateway-harness.js';
import { webhookReceiver, type Receiver } from './pull-helpers.js';

/**
 * A manual pull (`POST /v1/pull`, `meteorzx pull --into`) of a configured
 * agent whose scheduled run is waiting out `retries.delay` (10 minutes
 * here) starts at once and answers with its own result: the waiting run
 * ends, not counted as failed. Before, the POST queued behind the wait and
 * `meteorzx pull` hung for up to tries × delay.
 */

const N = 120;
let dir: string;
let agent: Agent;
let link: Link;
let gateway: RunningGateway;
let hook: Receiver;

/** A TCP link to the agent's pull listener that can be cut (every connection dropped) and restored. */
interface Link {
  url: string;
  up: boolean;
  close(): Promise<void>;
}

async function linkTo(port: number): Promise<Link> {
  const state = { up: false };
  const server: Server = createServer((socket) => {
    if (!state.up) {
      socket.destroy();
      return;
    }
    const upstream = connect(port, '127.0.0.1');
    socket.pipe(upstream).pipe(socket);
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get up() {
      return state.up;
    },
    set up(value: boolean) {
      state.up = value;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

interface Connector {
  url: string;
  state: string;
  lastError: string | null;
  checkpoint: { seq: number } | null;
}

async function connector(): Promise<Connector | undefined> {
  const res = await fetch(`${gateway.httpUrl}/v1/sources`);
  return ((await res.json()) as { pulls: { connectors: Connector[] } }).pulls.connectors.find((c) => c.url === link.url);
}

async function failedRuns(): Promise<number> {
  const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('meteorzx_gateway_pull_runs_total{') && l.includes(`url="${link.url}"`) && l.includes('result="failed"'));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

beforeAll(async () => {
  dir = await tempDir('pull-manual');
  hook = await webhookReceiver();
  agent = await startAgent(dir, { id: 'manual-src' });
  const res = await postEvents(agent.intakeUrl, Array.from({ length: N }, (_, i) => ({ type: 'test.manual', data: { i } })));
  expect(res.status).toBe(200);
  link = await linkTo(Number(new URL(agent.pullUrl).port));
  gateway = await startGateway({
    dir,
    config: {
      // The first scheduled run comes within a second; its retries are ten minutes apart.
      pullFrom: [{ url: link.url, every: '1s', retries: { tries: 3, delay: '10m' } }],
      alerts: { webhook: hook.url },
      backfill: { enabled: false },
    },
  });
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await killAll();
  await link?.close();
  await hook?.close();
  await removeDir(dir);
});

describe('a manual pull while a scheduled run waits out its retry delay', () => {
  it('POST /v1/pull answers at once with its own failure (502) while the agent is still down', async () => {
    await waitFor(async () => (await connector())?.state === 'retrying', 'the scheduled run waiting to retry');
    const t0 = Date.now();
    const res = await fetch(`${gateway.httpUrl}/v1/pull`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: link.url }) });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { code: string }).code).toBe('METEORZX_PULL_FAILED');
    // Its one attempt failed, counted and alerted as one; the scheduled run it cut short is neither.
    expect(await failedRuns()).toBe(1);
    const alert = await waitFor(() => hook.bodies.find((b) => b.kind === 'pull-failed'), 'pull-failed alert');
    expect(String(alert.detail)).toContain('after 1 attempt(s)');
  }, 30_000);

  it('meteorzx pull --into answers within seconds with the events, and the waiting run ends without failing', async () => {
    // The next scheduled run (every 1s) fails too and waits its ten minutes.
    await waitFor(async () => (await connector())?.state === 'retrying', 'the next scheduled run waiting to retry');
    link.up = true;
    const t0 = Date.now();
    const res = await runCli(['pull', link.url, '--into', gateway.httpUrl]);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ url: link.url, agent: 'manual-src', pulled: N, accepted: N, lastSeq: N });
    const stored = await gatewayEvents(gateway.httpUrl, 'manual-src');
    expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(await connector()).toMatchObject({ state: 'ok', lastError: null, checkpoint: { seq: N } });
    // The scheduled run that waited is not counted as failed and raised no alert of its own.
    expect(await failedRuns()).toBe(1);
    expect(hook.bodies.filter((b) => b.kind === 'pull-failed')).toHaveLength(1);
    const cutShort = gateway.logs.filter((l) => l.includes('pull retry wait cut short'));
    expect(cutShort.length).toBeGreaterThanOrEqual(2);
  }, 30_000);
});
