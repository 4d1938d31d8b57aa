import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainEvent, newId, type AuditEvent } from '../../protocols/index.js';
import { gatewayEvents, killAll, removeDir, tempDir, waitFor } from './agent-harness.js';
import { ingest, startGateway, type RunningGateway } from './gateway-harness.js';
import { fakePullAgent, webhookReceiver, type FakePullAgent, type Receiver } from './pull-helpers.js';

/**
 * A loss the agent recorded itself (its chained `meteorzx.gap` event, as
 * drop-oldest or retention of undelivered blocks appends it) is accounted
 * for by the gateway when that event arrives: the hole is marked reported
 * by the agent, backfill does not ask for it (the agent would answer 410),
 * and no second gap record or alert follows. Only a verified gap event of
 * the same agent and epoch marks a hole.
 */

interface SourcesView {
  epochs: { agent: string; epoch: string; gaps: { from: number; to: number; reportedByAgent?: boolean }[] }[];
  pulls: { lost: { agent: string; epoch: string; from: number; to: number }[] };
}

async function sources(url: string): Promise<SourcesView> {
  return (await (await fetch(`${url}/v1/sources`)).json()) as SourcesView;
}


/** A chain of `n` events; `special(seq)` gives the type and data of a seq that is not a plain event. */
function chainOf(agent: string, epoch: string, n: number, special: (seq: number) => Partial<AuditEvent> | undefined = () => undefined): AuditEvent[] {
  const out: AuditEvent[] = [];
  let prev: string | undefined;
  for (let seq = 1; seq <= n; seq += 1) {
    const event = chainEvent({ id: newId(), type: 'test.agent-gap', source: agent, agent, epoch, seq, time: new Date().toISOString(), ...special(seq) }, prev);
    prev = event.hash;
    out.push(event);
  }
  return out;
}

const dropped = (from: number, to: number): Partial<AuditEvent> => ({
  type: 'meteorzx.gap',
  data: { from, to, count: to - from + 1, reason: 'buffer-full-drop-oldest' },
});

describe('a loss the agent recorded with its own chained gap event', () => {
  let dir: string;
  let gateway: RunningGateway;
  let hook: Receiver;
  let fake: FakePullAgent;
  const EPOCH = 'E-AGAP-1';
  // Seqs 11..15 were dropped by the agent (drop-oldest) before delivery; seq 16 is its gap event naming them.
  const chain = chainOf('agap-1', EPOCH, 20, (seq) => (seq === 16 ? dropped(11, 15) : undefined));

  beforeAll(async () => {
    dir = await tempDir('backfill-agent-gap');
    hook = await webhookReceiver();
    // The agent: it no longer holds 11..15 (410 for them), it holds 16..20.
    fake = await fakePullAgent({ id: 'agap-1', epoch: EPOCH, chain, oldest: 16, gone: 'deleted (drop-oldest)' });
    const fakeUrl = fake.url;
    gateway = await startGateway({
      dir,
      config: { pullFrom: [{ url: fakeUrl, every: '24h' }], backfill: { grace: '200ms', every: '100ms' }, alerts: { webhook: hook.url } },
    });
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop();
    await killAll();
    await hook?.close();
    await fake?.close();
    await removeDir(dir);
  });

  it('closes the hole it names: backfill does not ask for it, no second gap record, no alert', async () => {
    // Pushed: everything the agent still had, but seq 18 was lost in transit (a hole backfill must repair).
    const pushed = chain.filter((e) => (e.seq as number) <= 10 || ((e.seq as number) >= 16 && e.seq !== 18));
    expect((await ingest(gateway.httpUrl, pushed)).accepted).toBe(pushed.length);

    // Backfill scans the holes in seq order: once 18 is back, the scan has decided on 11..15 too.
    await waitFor(async () => (await gatewayEvents(gateway.httpUrl, 'agap-1')).some((e) => e.seq === 18), 'seq 18 backfilled', 30_000);
    const stored = await gatewayEvents(gateway.httpUrl, 'agap-1');
    const gaps = stored.filter((e) => e.type === 'meteorzx.gap');
    expect(gaps.map((e) => ({ seq: e.seq, data: e.data, integrity: e.ingest?.integrity }))).toEqual([
      { seq: 16, data: { from: 11, to: 15, count: 5, reason: 'buffer-full-drop-oldest' }, integrity: 'verified' },
    ]);
    expect(fake.asked).not.toContain(10);
    expect(hook.bodies.filter((b) => b.kind === 'gap-lost')).toEqual([]);
    // alerts.gaps: the hole at 18 was open for the grace (one seq-gap, raised by the scan before it repairs); 11..15, on record
    // as the agent's gap event, raises none.
    await waitFor(() => hook.bodies.some((b) => b.kind === 'seq-gap' && b.from === 18), 'seq-gap alert for 18');
    expect(hook.bodies.filter((b) => b.kind === 'seq-gap' && b.agent === 'agap-1').map((b) => [b.from, b.to])).toEqual([[18, 18]]);
    const view = await sources(gateway.httpUrl);
    expect(view.pulls.lost).toEqual([]);
    expect(view.epochs.find((e) => e.agent === 'agap-1')?.gaps).toEqual([expect.objectContaining({ from: 11, to: 15, reportedByAgent: true })]);
  }, 60_000);

  it('is not fooled by gap events that are unchained, broken, or of another epoch or agent', async () => {
    const agent = 'agap-2';
    const epoch = 'E-AGAP-2';
    const genuine = chainOf(agent, epoch, 20);
    await ingest(gateway.httpUrl, genuine.filter((e) => (e.seq as number) <= 10 || (e.seq as number) >= 16));
    const names = { type: 'meteorzx.gap', source: agent, data: { from: 11, to: 15, count: 5, reason: 'buffer-full-drop-oldest' } };
    const at = new Date().toISOString();
    // Seq 21 chained but its prev is not seq 20's hash (broken); 22 without hash (unchained); 23 altered after hashing (broken).
    const wrongPrev = chainEvent({ id: newId(), ...names, agent, epoch, seq: 21, time: at }, 'f'.repeat(64));
    const unchained: AuditEvent = { id: newId(), ...names, agent, epoch, seq: 22, time: at };
    const hashed = chainEvent({ id: newId(), ...names, agent, epoch, seq: 23, time: at }, 'e'.repeat(64));
    const altered = { ...hashed, data: { ...names.data, reason: 'retention-undelivered' } };
    // Verified, but in another epoch of the agent (naming this one), or of another agent with the same epoch name.
    const otherEpoch = chainEvent({ id: newId(), ...names, data: { ...names.data, epoch }, agent, epoch: 'E-AGAP-2b', seq: 30, time: at }, undefined);
    const otherAgent = chainEvent({ id: newId(), ...names, source: 'agap-3', agent: 'agap-3', epoch, seq: 30, time: at }, undefined);
    // An unchained record naming the range from the outside (the shape of the gateway's own backfill record).
    const outside: AuditEvent = { id: newId(), type: 'meteorzx.gap', source: agent, time: at, data: { agent, epoch, from: 11, to: 15, count: 5, reason: 'forged' } };
    expect((await ingest(gateway.httpUrl, [wrongPrev, unchained, altered, otherEpoch, otherAgent, outside])).accepted).toBe(6);

    const stored = await gatewayEvents(gateway.httpUrl, agent);
    expect(Object.fromEntries(stored.filter((e) => e.type === 'meteorzx.gap').map((e) => [e.id, e.ingest?.integrity]))).toEqual({
      [wrongPrev.id as string]: 'broken',
      [unchained.id as string]: 'unchained',
      [altered.id as string]: 'broken',
      [otherEpoch.id as string]: 'verified',
      [outside.id as string]: 'unchained',
    });
    const gapsOf = async () => (await sources(gateway.httpUrl)).epochs.find((e) => e.agent === agent && e.epoch === epoch)?.gaps;
    expect(await gapsOf()).toEqual([{ from: 11, to: 15, since: expect.any(String) }]);

    // The agent's own gap event, chained to seq 23 as it arrived, does close it.
    const own = chainEvent({ id: newId(), ...names, agent, epoch, seq: 24, time: at }, altered.hash);
    await ingest(gateway.httpUrl, [own]);
    expect(await gapsOf()).toEqual([{ from: 11, to: 15, since: expect.any(String), reportedByAgent: true }]);
  }, 60_000);
});

describe('a pull-only agent whose gap event for a dropped range lies above the pulled range', () => {
  let dir: string;
  let gateway: RunningGateway;
  let hook: Receiver;
  let fake: FakePullAgent;
  const EPOCH = 'E-AGAP-4';
  // Drop-oldest deleted 1..15 of a pull-only agent (nothing is delivered without push), and its gap event is
  // seq 21, after 16..20: a pull that stopped at 20 has the hole 11..15 but not yet the event that names it.
  const chain = chainOf('agap-4', EPOCH, 21, (seq) => (seq === 21 ? dropped(1, 15) : undefined));

  beforeAll(async () => {
    dir = await tempDir('backfill-agent-gap-above');
    hook = await webhookReceiver();
    fake = await fakePullAgent({ id: 'agap-4', epoch: EPOCH, chain, oldest: 16, gone: 'seqs 1..15 were deleted (drop-oldest)' });
    gateway = await startGateway({
      dir,
      config: { pullFrom: [{ url: fake.url, every: '24h' }], backfill: { grace: '200ms', every: '100ms', tries: 2 }, alerts: { webhook: hook.url } },
    });
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop();
    await killAll();
    await hook?.close();
    await fake?.close();
    await removeDir(dir);
  });

  it('waits for the agent gap event instead of recording the 410 range a second time', async () => {
    expect((await ingest(gateway.httpUrl, chain.filter((e) => (e.seq as number) <= 10 || ((e.seq as number) >= 16 && (e.seq as number) <= 20)))).accepted).toBe(15);
    const decided = async () => {
      const view = await sources(gateway.httpUrl);
      return view.pulls.lost.length > 0 || view.epochs.find((e) => e.agent === 'agap-4')?.gaps[0]?.reportedByAgent === true;
    };
    await waitFor(decided, 'the hole marked reported by the agent, or recorded lost', 30_000);
    // More scans than backfill.tries looks would take.
    await new Promise((r) => setTimeout(r, 1500));
    const stored = (await gatewayEvents(gateway.httpUrl, 'agap-4')).filter((e) => e.type === 'meteorzx.gap');
    // Before the fix: the 410 was recorded at once (a gateway meteorzx.gap for 11..15, pulls.lost, a gap-lost alert)
    // before the agent gap event (seq 21) arrived with the next run: the loss recorded twice.
    expect({
      gapRecords: stored.map((e) => e.seq ?? e.id),
      lost: (await sources(gateway.httpUrl)).pulls.lost,
      gapLost: hook.bodies.filter((b) => b.kind === 'gap-lost').length,
    }).toEqual({ gapRecords: [21], lost: [], gapLost: 0 });
  }, 60_000);
});
