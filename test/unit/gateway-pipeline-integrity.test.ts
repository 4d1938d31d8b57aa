import { describe, expect, it } from 'vitest';
import { chainEvent, type AuditEvent, type ChainPosition } from '../../protocols/index.js';
import { ChainTracker } from '../../gateway/pipeline/integrity/integrity.js';

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
