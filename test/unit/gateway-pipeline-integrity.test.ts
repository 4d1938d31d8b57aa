import { describe, expect, it } from 'vitest';
import { chainEvent, type AuditEvent, type ChainPosition } from '../../protocols/index.js';
import { ChainTracker } from '../../gateway/pipeline/integrity/integrity.js';
import type { ChainState } from '../../gateway/storage/types.js';

type Chained = AuditEvent & { hash: string; seq: number };

function chain(agent: string, epoch: string, n: number): Array<AuditEvent & { hash: string }> {
  const out: Array<AuditEvent & { hash: string }> = [];
  for (let seq = 1; seq <= n; seq += 1) out.push(chainEvent({ type: 't', source: agent, agent, epoch, seq, data: { seq } }, out[seq - 2]?.hash));
  return out;
}

describe('integrity stage', () => {
  it('verifies a linked chain and marks events without hash unchained', async () => {
    const t = new ChainTracker(async () => undefined);
    const events = chain('a', 'e', 3);
    await t.prepare(events);
    expect(events.map((e) => t.check(e).integrity)).toEqual(['verified', 'verified', 'verified']);
    expect(t.check({ type: 't' }).integrity).toBe('unchained');
  });

  it('flags a changed event and a wrong prev as broken, and goes on after it', async () => {
    const t = new ChainTracker(async () => undefined);
    const [e1, e2, e3, e4] = chain('a', 'e', 4) as [AuditEvent, AuditEvent, AuditEvent, AuditEvent];
    await t.prepare([e1]);
    expect(t.check(e1).integrity).toBe('verified');
    const edited = { ...e2, data: { seq: 99 } };
    expect(t.check(edited)).toMatchObject({ integrity: 'broken', detail: expect.stringContaining('hash does not match') });
    const forged = chainEvent({ ...e3, prev: undefined }, 'f'.repeat(64));
    expect(t.check(forged)).toMatchObject({ integrity: 'broken', detail: expect.stringContaining('prev') });
    // The chain head moved to the forged seq 3; the genuine seq 4 links to the genuine seq 3, not to it.
    expect(t.check(e4).integrity).toBe('broken');
  });

  it('seeds positions from storage after a restart, once per chain', async () => {
    const events = chain('a', 'e', 5);
    const lookups: string[] = [];
    const head: ChainPosition = { seq: 3, hash: events[2]?.hash as string };
    const t = new ChainTracker(async (agent, epoch) => {
      lookups.push(`${agent}/${epoch}`);
      return head;
    });
    await t.prepare([events[3] as AuditEvent]);
    await t.prepare([events[4] as AuditEvent]);
    expect(lookups).toEqual(['a/e']);
    expect(t.check(events[3] as AuditEvent).integrity).toBe('verified');
    const wrongHead = new ChainTracker(async () => ({ seq: 3, hash: '0'.repeat(64) }));
    await wrongHead.prepare([events[3] as AuditEvent]);
    expect(wrongHead.check(events[3] as AuditEvent).integrity).toBe('broken');
  });

  it('does not call a gap or a late arrival a break', async () => {
    const t = new ChainTracker(async () => undefined);
    const events = chain('a', 'e', 6);
    await t.prepare(events);
    expect(t.check(events[0] as AuditEvent).integrity).toBe('verified');
    expect(t.check(events[4] as AuditEvent).integrity).toBe('verified'); // seq 5 after seq 1: gap
    expect(t.check(events[2] as AuditEvent).integrity).toBe('verified'); // seq 3 late
    expect(t.check(events[5] as AuditEvent).integrity).toBe('verified'); // seq 6 links to seq 5
    expect(t.check({ ...(events[1] as AuditEvent), type: 'x' }).integrity).toBe('broken'); // late but altered
  });

  it('forgets positions on reset', async () => {
    let calls = 0;
    const t = new ChainTracker(async () => {
      calls += 1;
      return undefined;
    });
    const events = chain('a', 'e', 2);
    await t.prepare(events);
    t.check(events[0] as AuditEvent);
    t.reset();
    await t.prepare([events[1] as AuditEvent]);
    expect(calls).toBe(2);
  });
});

/** Seqs `from`..`to` (inclusive) of a chain made by `chain`. */
function seqs(events: readonly Chained[], from: number, to: number): Chained[] {
  return events.slice(from - 1, to);
}

/** The same event with other content, hashed again: what anyone can do in transit (the hash is unkeyed). */
function forge(event: Chained, change: Partial<AuditEvent> = { actor: 'mallory' }): Chained {
  return chainEvent({ ...event, ...change }, change.prev ?? event.prev) as Chained;
}

/** One commit: prepare, then check each event in order; answers `seq:integrity` for those not verified. */
async function commit(t: ChainTracker, events: readonly AuditEvent[]): Promise<string[]> {
  await t.prepare(events);
  return events.flatMap((e) => {
    const v = t.check(e);
    return v.integrity === 'verified' ? [] : [`${e.seq}:${v.integrity}`];
  });
}

describe('integrity stage: late events', () => {
  const events = chain('a', 'e', 30) as Chained[];

  it('links a late batch to the gap it fills: a forged, re-hashed seq 15 breaks the link of seq 16', async () => {
    const t = new ChainTracker(async () => undefined);
    expect(await commit(t, seqs(events, 1, 10))).toEqual([]);
    expect(await commit(t, seqs(events, 21, 30))).toEqual([]);
    const late = seqs(events, 11, 20).map((e) => (e.seq === 15 ? forge(e) : e));
    // As in order: the forged event's content matches its hash; the next seq's prev exposes it.
    expect(await commit(t, late)).toEqual(['16:broken']);
  });

  it('marks the late event itself where its stored neighbour exposes it', async () => {
    const top = new ChainTracker(async () => undefined);
    await commit(top, [...seqs(events, 1, 10), ...seqs(events, 21, 30)]);
    const v = [];
    await top.prepare(seqs(events, 11, 20));
    for (const e of seqs(events, 11, 20)) v.push(top.check(e.seq === 20 ? forge(e) : e));
    expect(v.map((x) => x.integrity).lastIndexOf('broken')).toBe(9);
    expect(v[9]?.detail).toBe('seq 20: hash does not match the prev of seq 21');
    expect(v.filter((x) => x.integrity === 'broken')).toHaveLength(1);

    // A forged seq 11 that says another prev: its prev is not the hash of seq 10.
    const bottom = new ChainTracker(async () => undefined);
    await commit(bottom, [...seqs(events, 1, 10), ...seqs(events, 21, 30)]);
    await bottom.prepare([]);
    expect(bottom.check(forge(events[10] as Chained, { prev: 'f'.repeat(64) }))).toEqual({
      integrity: 'broken',
      detail: 'seq 11: prev does not match the hash of seq 10',
    });
  });

  it('checks a late event alone against both edges, and splits the gap it lands in', async () => {
    const t = new ChainTracker(async () => undefined);
    await commit(t, [...seqs(events, 1, 10), ...seqs(events, 21, 30)]);
    expect(await commit(t, [events[14] as Chained])).toEqual([]); // seq 15 in the middle: content only
    expect(await commit(t, [forge(events[13] as Chained)])).toEqual(['14:broken']); // its hash is not seq 15's prev
    expect(await commit(t, [forge(events[15] as Chained)])).toEqual([]); // seq 16: its prev is seq 15's hash …
    expect(await commit(t, [events[16] as Chained])).toEqual(['17:broken']); // … but seq 17 links to the genuine 16
    expect(await commit(t, [forge(events[10] as Chained)])).toEqual([]); // seq 11 at the bottom, its prev genuine …
    expect(await commit(t, [events[11] as Chained])).toEqual(['12:broken']); // … and seq 12 exposes it
    expect(await commit(t, seqs(events, 13, 13))).toEqual([]);
    expect(await commit(t, seqs(events, 18, 20))).toEqual([]);
  });

  it('keeps every legitimate arrival order verified', async () => {
    // Batches in flight together land in any order; single events too; a crashed agent sends some again.
    const orders: number[][][] = [
      [[1, 10], [21, 30], [11, 20]],
      [[21, 30], [11, 20], [1, 10]],
      [[11, 20], [1, 10], [21, 30]],
      [[1, 5], [26, 30], [16, 20], [6, 10], [21, 25], [11, 15]],
      [[1, 30], [1, 30]],
      [[1, 10], [21, 30], [5, 15], [11, 25]],
    ];
    for (const order of orders) {
      const t = new ChainTracker(async () => undefined);
      for (const [from, to] of order) expect(await commit(t, seqs(events, from as number, to as number))).toEqual([]);
    }
    // One at a time in a shuffled order (a fixed shuffle: reproducible).
    const t = new ChainTracker(async () => undefined);
    const shuffled = [...events].sort((a, b) => ((a.seq * 7919) % 31) - ((b.seq * 7919) % 31));
    for (const e of shuffled) expect(await commit(t, [e])).toEqual([]);
  });

  it('links consecutive late repeats to each other within a commit, not across commits', async () => {
    const t = new ChainTracker(async () => undefined);
    await commit(t, seqs(events, 1, 30));
    // Seqs received before: no gap to check against, but a late run is a chain of its own.
    const resend = seqs(events, 11, 20).map((e) => (e.seq === 15 ? forge(e, { id: 'other' }) : e));
    expect(await commit(t, resend)).toEqual(['16:broken']);
    expect(await commit(t, seqs(events, 16, 20))).toEqual([]);
  });

  it('reads gaps and edges back from storage; a gap stored without edges is checked on content only', async () => {
    const head = { seq: 30, hash: (events[29] as Chained).hash };
    const edged: ChainState = { ...head, gaps: [{ from: 11, to: 20, lowerHash: (events[9] as Chained).hash, upperPrev: (events[20] as Chained).prev as string }] };
    const t = new ChainTracker(async () => structuredClone(edged));
    expect(await commit(t, [forge(events[19] as Chained)])).toEqual(['20:broken']);
    expect(await commit(t, [forge(events[10] as Chained, { prev: 'f'.repeat(64) })])).toEqual(['11:broken']);

    // Written before gaps had edges: the edges are unknown, each late event becomes one as it comes.
    const legacy = new ChainTracker(async () => ({ ...head, gaps: [{ from: 11, to: 20 }] }));
    expect(await commit(legacy, [forge(events[19] as Chained)])).toEqual([]);
    expect(await commit(legacy, [forge(events[10] as Chained, { prev: 'f'.repeat(64) })])).toEqual([]);
    // The forged 11 became the edge below: the genuine 12 exposes it; the forged 13 is exposed by 14.
    expect(await commit(legacy, seqs(events, 12, 15).map((e) => (e.seq === 13 ? forge(e) : e)))).toEqual(['12:broken', '14:broken']);
    expect(await commit(legacy, [forge(events[15] as Chained)])).toEqual([]); // seq 16 links to the genuine 15: its change waits for seq 17
  });

  it('uses the gaps of a head read back without a hash (its seq arrived unchained): the next seq on content only', async () => {
    const head: ChainState = { seq: 30, gaps: [{ from: 11, to: 20, lowerHash: (events[9] as Chained).hash, upperPrev: (events[20] as Chained).prev as string }] };
    const t = new ChainTracker(async () => head);
    expect(await commit(t, [forge(events[19] as Chained)])).toEqual(['20:broken']);
    expect(await commit(t, [forge(events[10] as Chained, { prev: 'f'.repeat(64) })])).toEqual(['11:broken']);
    // Seq 31 follows the unchained 30: no hash to link it to, so its content alone.
    const next = chainEvent({ type: 't', source: 'a', agent: 'a', epoch: 'e', seq: 31, data: { seq: 31 } }, 'a'.repeat(64)) as Chained;
    expect(await commit(t, [next])).toEqual([]);
    expect(await commit(t, [{ ...next, seq: 32, data: { changed: true } }])).toEqual(['32:broken']);
  });

  it('keeps epochs apart: a new epoch starts at seq 1 with no link to the old one', async () => {
    const t = new ChainTracker(async () => undefined);
    const next = chain('a', 'e2', 10) as Chained[];
    expect(await commit(t, [...seqs(events, 1, 10), ...seqs(events, 21, 30)])).toEqual([]);
    expect(await commit(t, seqs(next, 4, 10))).toEqual([]); // a gap 1..3 in the new epoch
    expect(await commit(t, [...seqs(next, 1, 3), ...seqs(events, 11, 20)])).toEqual([]);
    expect(await commit(t, [forge(next[2] as Chained)])).toEqual([]); // a repeat of seq 3 of the new epoch, alone: content only
    expect(await commit(t, [chainEvent({ ...(next[0] as Chained) }, 'f'.repeat(64))])).toEqual(['1:broken']); // seq 1 has no prev
  });

  it('stays within its bound of gaps', async () => {
    const t = new ChainTracker(async () => undefined, 10, 100);
    // Every other seq of 20 chains: 20 × 99 gaps, more than the bound holds; the oldest chains go.
    for (let c = 0; c < 20; c += 1) {
      const odd = (chain('a', `e${c}`, 199) as Chained[]).filter((e) => e.seq % 2 === 1);
      expect(await commit(t, odd)).toEqual([]);
    }
    const held = (t as unknown as { chains: { calculatedSize: number; size: number } }).chains;
    expect(held.calculatedSize).toBeLessThanOrEqual(10 + 1000);
    expect(held.size).toBeLessThan(20);
  });
});
