import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainEvent, newId, type AuditEvent } from '../../protocols/index.js';
import { gatewayEvents, holesPerEpoch, killAll, postEvents, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { ingest, startGateway, type RunningGateway } from './gateway-harness.js';
import { droppingProxy, fakePullAgent, webhookReceiver, type DroppingProxy, type FakePullAgent, type Receiver } from './pull-helpers.js';

/**
 * Issue 5, Done-when 3 and 4: events lost in transit (a proxy swallows
 * chosen push batches while answering the agent 200) show up as holes and
 * are pulled back automatically; a hole the agent can no longer serve
 * becomes exactly one `meteorzx.gap` record with the exact range.
 */

interface SourcesView {
  epochs: { agent: string; epoch: string; gaps: { from: number; to: number }[] }[];
  pulls: { lost: { agent: string; epoch: string; from: number; to: number }[] };
}

async function sources(url: string): Promise<SourcesView> {
  return (await (await fetch(`${url}/v1/sources`)).json()) as SourcesView;
}

describe('backfill of events lost in transit, over the HTTP pull connector', () => {
  let dir: string;
  let gateway: RunningGateway;
  let proxy: DroppingProxy;
  let agent: Agent;
  const ROUNDS = 10;
  const PER_ROUND = 50;

  beforeAll(async () => {
    dir = await tempDir('pull-backfill');
    proxy = await droppingProxy(undefined, new Set([2, 4, 5]));
    agent = await startAgent(dir, { id: 'bf-http', push: { http: { url: `${proxy.url}/v1/events` }, batch: { maxEvents: 50, maxWaitMs: 10 } } });
    gateway = await startGateway({
      dir,
      config: {
        // The schedule is far off: any repair seen here is the backfill's.
        pullFrom: [{ url: agent.pullUrl, every: '24h' }],
        backfill: { grace: '300ms', every: '200ms' },
      },
    });
    proxy.retarget(gateway.httpUrl);
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop();
    await killAll();
    await proxy?.close();
    await removeDir(dir);
  });

  it('detects the holes and pulls exactly them back; storage ends complete and duplicate-free', async () => {
    for (let round = 1; round <= ROUNDS; round += 1) {
      const res = await postEvents(agent.intakeUrl, Array.from({ length: PER_ROUND }, (_, i) => ({ type: 'test.backfill', data: { round, i } })));
      expect(res.status).toBe(200);
      await waitFor(async () => (await agent.status()).delivered >= round * PER_ROUND, `round ${round} delivered`);
    }
    expect(proxy.dropped.length).toBe(3);
    const total = ROUNDS * PER_ROUND;
    await waitFor(async () => (await gatewayEvents(gateway.httpUrl, 'bf-http')).length >= total, 'all events stored', 30_000);
    await waitFor(async () => (await sources(gateway.httpUrl)).epochs.every((e) => e.gaps.length === 0), 'no open holes');

    const events = await gatewayEvents(gateway.httpUrl, 'bf-http');
    expect(events.length).toBe(total);
    expect(new Set(events.map((e) => e.id)).size).toBe(total);
    expect([...holesPerEpoch(events).values()].every((h) => h.length === 0)).toBe(true);
    const pulled = events.filter((e) => e.ingest?.method === 'pull');
    // Exactly the swallowed batches came back by pull, nothing else.
    expect(pulled.length).toBeGreaterThan(0);
    expect(pulled.length).toBe(proxy.droppedEvents);
    expect(events.filter((e) => e.ingest?.method === 'http').length).toBe(total - pulled.length);
    expect(events.some((e) => e.type === 'meteorzx.gap')).toBe(false);
    expect(gateway.logs.some((l) => l.includes('backfilled over HTTP'))).toBe(true);
  }, 120_000);
});

describe('a hole the agent can no longer serve', () => {
  let dir: string;
  let gateway: RunningGateway;
  let hook: Receiver;
  let fake: FakePullAgent;
  let fakeUrl: string;
  const EPOCH = 'E-FAKE-1';
  const chain: AuditEvent[] = [];

  beforeAll(async () => {
    dir = await tempDir('pull-gone');
    hook = await webhookReceiver();
    let prev: string | undefined;
    for (let seq = 1; seq <= 20; seq += 1) {
      const event = chainEvent({ id: newId(), type: 'test.gone', source: 'fake-1', agent: 'fake-1', epoch: EPOCH, seq, time: new Date().toISOString() }, prev);
      prev = event.hash;
      chain.push(event);
    }
    // The fake agent: retention has deleted seqs 1..15, it holds 16..20.
    fake = await fakePullAgent({ id: 'fake-1', epoch: EPOCH, chain, oldest: 16, gone: 'deleted by retention' });
    fakeUrl = fake.url;
    gateway = await startGateway({
      dir,
      config: { pullFrom: [{ url: fakeUrl, every: '24h' }], backfill: { grace: '200ms', every: '100ms' }, alerts: { webhook: hook.url } },
    });
    // Pushed earlier: 1..10 and 16..20 arrived, 11..15 never did.
    const pushed = chain.filter((e) => (e.seq as number) <= 10 || (e.seq as number) >= 16);
    await ingest(gateway.httpUrl, pushed);
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop();
    await killAll();
    await hook?.close();
    await fake?.close();
    await removeDir(dir);
  });

  it('records one gap event with the exact range, alerts, and stops asking', async () => {
    const gapEvents = await waitFor(async () => {
      const found = (await gatewayEvents(gateway.httpUrl, 'fake-1')).filter((e) => e.type === 'meteorzx.gap');
      return found.length > 0 ? found : undefined;
    }, 'a meteorzx.gap record');
    expect(gapEvents.length).toBe(1);
    expect(gapEvents[0]?.data).toMatchObject({ agent: 'fake-1', epoch: EPOCH, from: 11, to: 15 });
    const alert = await waitFor(() => hook.bodies.find((b) => b.kind === 'gap-lost'), 'gap-lost webhook');
    expect(alert).toMatchObject({ agent: 'fake-1', epoch: EPOCH, from: 11, to: 15 });

    // Many more scans later: still one record, one alert, and the range is not fake.asked for again.
    const askedThen = fake.asked.length;
    await new Promise((r) => setTimeout(r, 1500));
    expect((await gatewayEvents(gateway.httpUrl, 'fake-1')).filter((e) => e.type === 'meteorzx.gap').length).toBe(1);
    expect(hook.bodies.filter((b) => b.kind === 'gap-lost').length).toBe(1);
    expect(fake.asked.length).toBe(askedThen);
    const view = await sources(gateway.httpUrl);
    expect(view.pulls.lost).toEqual([expect.objectContaining({ agent: 'fake-1', epoch: EPOCH, from: 11, to: 15 })]);
    // The registry still shows the hole (it did happen); the pulls section says it is a recorded loss.
    expect(view.epochs.find((e) => e.agent === 'fake-1')?.gaps).toEqual([expect.objectContaining({ from: 11, to: 15 })]);
  }, 60_000);
});

describe('a hole in the agent buffer that no gap event of the agent names', () => {
  let dir: string;
  let gateway: RunningGateway;
  let hook: Receiver;
  let fake: FakePullAgent;
  const EPOCH = 'E-FAKE-HOLE';

  beforeAll(async () => {
    dir = await tempDir('pull-hole');
    hook = await webhookReceiver();
    const chain: AuditEvent[] = [];
    let prev: string | undefined;
    for (let seq = 1; seq <= 20; seq += 1) {
      const event = chainEvent({ id: newId(), type: 'test.hole', source: 'fake-h', agent: 'fake-h', epoch: EPOCH, seq, time: new Date().toISOString() }, prev);
      prev = event.hash;
      chain.push(event);
    }
    // Delivered, then damaged: the agent's buffer steps over 11..15 and, having delivered them, wrote no gap event for them.
    fake = await fakePullAgent({ id: 'fake-h', epoch: EPOCH, chain: chain.filter((e) => (e.seq as number) < 11 || (e.seq as number) > 15), oldest: 1, gone: 'unused' });
    gateway = await startGateway({
      dir,
      config: { pullFrom: [{ url: fake.url, every: '24h' }], backfill: { grace: '200ms', every: '100ms', tries: 2 }, alerts: { webhook: hook.url } },
    });
    // Yet 11..15 never reached the gateway.
    await ingest(gateway.httpUrl, chain.filter((e) => (e.seq as number) <= 10 || (e.seq as number) >= 16));
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop();
    await killAll();
    await hook?.close();
    await fake?.close();
    await removeDir(dir);
  });

  it('is recorded as one loss with an alert after backfill.tries looks (it was marked lost in silence)', async () => {
    const gapEvents = await waitFor(async () => {
      const found = (await gatewayEvents(gateway.httpUrl, 'fake-h')).filter((e) => e.type === 'meteorzx.gap');
      return found.length > 0 ? found : undefined;
    }, 'a meteorzx.gap record');
    expect(gapEvents.length).toBe(1);
    expect(gapEvents[0]?.data).toMatchObject({ agent: 'fake-h', epoch: EPOCH, from: 11, to: 15, detectedBy: 'gateway-backfill', reason: expect.stringMatching(/in 2 look/) as unknown });
    const alert = await waitFor(() => hook.bodies.find((b) => b.kind === 'gap-lost'), 'gap-lost webhook');
    expect(alert).toMatchObject({ agent: 'fake-h', epoch: EPOCH, from: 11, to: 15 });
    // Asked for once per look (tries: 2, then recorded), not again afterwards.
    const askedThen = fake.asked.length;
    await new Promise((r) => setTimeout(r, 1000));
    expect({ asked: fake.asked.length, records: (await gatewayEvents(gateway.httpUrl, 'fake-h')).filter((e) => e.type === 'meteorzx.gap').length }).toEqual({ asked: askedThen, records: 1 });
    expect((await sources(gateway.httpUrl)).pulls.lost).toEqual([expect.objectContaining({ agent: 'fake-h', epoch: EPOCH, from: 11, to: 15 })]);
  }, 60_000);
});

describe('backfill over the command channel (agent behind NAT: no pullFrom)', () => {
  let dir: string;
  let gateway: RunningGateway | undefined;
  let proxy: DroppingProxy;
  let agent: Agent;
  const TOTAL = 400;

  beforeAll(async () => {
    dir = await tempDir('pull-cmd');
  });

  afterAll(async () => {
    await gateway?.stop();
    await killAll();
    await proxy?.close();
    await removeDir(dir);
  });

  it('asks the agent on audit/<id>/cmd and it re-pushes exactly the holes over MQTT', async () => {
    // Phase 1: push over HTTP through a proxy that loses two batches; no backfill yet.
    proxy = await droppingProxy(undefined, new Set([2, 4]));
    const base = { id: 'bf-cmd', push: { http: { url: `${proxy.url}/v1/events` }, batch: { maxEvents: 50, maxWaitMs: 10 } } };
    agent = await startAgent(dir, base);
    gateway = await startGateway({ dir, config: { backfill: { enabled: false } } });
    proxy.retarget(gateway.httpUrl);
    for (let round = 1; round <= TOTAL / 50; round += 1) {
      await postEvents(agent.intakeUrl, Array.from({ length: 50 }, (_, i) => ({ type: 'test.cmd', data: { round, i } })));
      await waitFor(async () => (await agent.status()).delivered >= round * 50, `round ${round} delivered`);
    }
    expect(proxy.droppedEvents).toBeGreaterThan(0);
    const holes = (await sources(gateway.httpUrl)).epochs.find((e) => e.agent === 'bf-cmd')?.gaps ?? [];
    expect(holes.length).toBeGreaterThan(0);
    await agent.stop();
    await gateway.stop();

    // Phase 2: the agent now talks MQTT to the gateway's broker; the gateway cannot reach its pull API.
    gateway = await startGateway({ dir, config: { backfill: { grace: '200ms', every: '200ms' } } });
    const { push: _http, ...rest } = base;
    agent = await startAgent(dir, { ...rest, push: { mqtt: { url: `mqtt://127.0.0.1:${gateway.mqttPort}` } } });
    const gw = gateway;
    await waitFor(async () => (await sources(gw.httpUrl)).epochs.every((e) => e.gaps.length === 0), 'holes closed', 60_000);

    const events = await gatewayEvents(gw.httpUrl, 'bf-cmd');
    expect(events.length).toBe(TOTAL);
    expect(new Set(events.map((e) => e.id)).size).toBe(TOTAL);
    expect(events.filter((e) => e.ingest?.method === 'mqtt').length).toBe(proxy.droppedEvents);
    // The agent's delivered cursor did not move backwards.
    expect((await agent.status()).delivered).toBe(TOTAL);
  }, 120_000);
});

describe('a hole the real agent has already deleted (drop-oldest)', () => {
  let dir: string;
  let gateway: RunningGateway | undefined;
  let proxy: DroppingProxy;
  let agent: Agent;

  beforeAll(async () => {
    dir = await tempDir('pull-deleted');
  });

  afterAll(async () => {
    await gateway?.stop();
    await killAll();
    await proxy?.close();
    await removeDir(dir);
  });

  it('becomes exactly one meteorzx.gap record naming the dropped seqs, and no repair loop', async () => {
    proxy = await droppingProxy(undefined, new Set([2]));
    agent = await startAgent(dir, {
      id: 'bf-deleted',
      // A tiny buffer that deletes its oldest (already delivered) blocks to make room.
      buffer: { maxBytes: '80KiB', whenFull: 'drop-oldest' },
      push: { http: { url: `${proxy.url}/v1/events` }, batch: { maxEvents: 50, maxWaitMs: 10 } },
    });
    gateway = await startGateway({ dir, config: { backfill: { enabled: false } } });
    proxy.retarget(gateway.httpUrl);
    let round = 0;
    const pad = 'y'.repeat(300);
    // Keep writing until the agent no longer holds the swallowed batch.
    await waitFor(
      async () => {
        round += 1;
        await postEvents(agent.intakeUrl, Array.from({ length: 50 }, (_, i) => ({ type: 'test.deleted', data: { round, i, pad } })));
        const s = await agent.status();
        await waitFor(async () => (await agent.status()).delivered >= s.head, 'delivered');
        return proxy.droppedSeqs.length > 0 && s.oldest > Math.max(...proxy.droppedSeqs) + 1;
      },
      'the dropped range deleted at the agent',
      60_000,
    );
    const dropped = [...proxy.droppedSeqs].sort((a, b) => a - b);
    const from = dropped[0] as number;
    const to = dropped.at(-1) as number;
    expect(to - from + 1).toBe(dropped.length);
    await gateway.stop();

    // Now with backfill and a pull connector for the agent.
    const hook = await webhookReceiver();
    try {
      gateway = await startGateway({
        dir,
        config: {
          pullFrom: [{ url: agent.pullUrl, every: '24h' }],
          backfill: { grace: '200ms', every: '100ms' },
          alerts: { webhook: hook.url },
        },
      });
      proxy.retarget(gateway.httpUrl); // the agent's pushes reach the restarted gateway, as before
      const gw = gateway;
      const gaps = await waitFor(async () => {
        const found = (await gatewayEvents(gw.httpUrl, 'bf-deleted')).filter((e) => e.type === 'meteorzx.gap');
        return found.length > 0 ? found : undefined;
      }, 'the gap record');
      expect(gaps.length).toBe(1);
      expect(gaps[0]?.data).toMatchObject({ agent: 'bf-deleted', from, to });
      await waitFor(() => hook.bodies.find((b) => b.kind === 'gap-lost'), 'gap-lost alert');
      await new Promise((r) => setTimeout(r, 1000));
      expect((await gatewayEvents(gw.httpUrl, 'bf-deleted')).filter((e) => e.type === 'meteorzx.gap').length).toBe(1);
      expect(hook.bodies.filter((b) => b.kind === 'gap-lost').length).toBe(1);
      expect((await sources(gw.httpUrl)).pulls.lost).toEqual([expect.objectContaining({ agent: 'bf-deleted', from, to })]);
    } finally {
      await hook.close();
    }
  }, 120_000);
});
