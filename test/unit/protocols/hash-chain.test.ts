import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { chainEvent, computeHash, verifyChain, type AuditEvent } from '../../../protocols/index.js';

function makeChain(n: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  let prev: string | undefined;
  for (let seq = 1; seq <= n; seq++) {
    const e = chainEvent(
      { id: `e${seq}`, type: 'auth.login', source: 'host-1', time: '2026-11-26T12:00:00Z', agent: 'host-1', epoch: 'ep1', seq, data: { n: seq, user: 'ünïcode ✓' } },
      prev,
    );
    prev = e.hash;
    out.push(e);
  }
  return out;
}

describe('hash chain', () => {
  it('a valid chain verifies', () => {
    const v = verifyChain(makeChain(20));
    expect(v.ok).toBe(true);
    expect(v.breaks).toEqual([]);
    expect(v.last?.seq).toBe(20);
  });

  it('hash covers prev and excludes hash itself', () => {
    const [a, b] = makeChain(2) as [AuditEvent, AuditEvent];
    expect(b.prev).toBe(a.hash);
    expect(computeHash(b)).toBe(b.hash);
    expect(computeHash({ ...b, prev: a.hash?.replace(/^./, '0') })).not.toBe(b.hash);
  });

  it('changing any byte of any event is detected at its position', () => {
    const chain = makeChain(8);
    fc.assert(
      fc.property(fc.nat({ max: 7 }), fc.nat(), fc.nat({ max: 255 }), (index, offset, byte) => {
        const events = chain.map((e) => JSON.stringify(e));
        const text = events[index] as string;
        const pos = offset % text.length;
        const changed = text.slice(0, pos) + String.fromCharCode(byte) + text.slice(pos + 1);
        if (changed === text) return;
        let parsed: AuditEvent;
        try {
          parsed = JSON.parse(changed) as AuditEvent;
        } catch {
          return; // the byte broke JSON itself: caught earlier, by the decoder
        }
        if (JSON.stringify(parsed) === text) return; // e.g. whitespace-only change with no meaning
        const list = chain.map((e, i) => (i === index ? parsed : e));
        const v = verifyChain(list);
        expect(v.ok).toBe(false);
        expect(v.breaks[0]?.index).toBe(index);
      }),
      { numRuns: 400 },
    );
  });

  it('reordering is detected and reported with the position', () => {
    const chain = makeChain(6);
    const swapped = [chain[0], chain[1], chain[3], chain[2], chain[4], chain[5]] as AuditEvent[];
    const v = verifyChain(swapped);
    expect(v.ok).toBe(false);
    expect(v.breaks[0]?.index).toBe(2);
  });

  it('removing an event is detected at the next position', () => {
    const chain = makeChain(6);
    const removed = chain.filter((_, i) => i !== 3);
    const v = verifyChain(removed);
    expect(v.ok).toBe(false);
    expect(v.breaks[0]).toMatchObject({ index: 3, seq: 5, reason: 'seq-gap' });
  });

  it('a removed event with renumbered seqs is still caught by prev', () => {
    const chain = makeChain(4);
    const forged = [chain[0], { ...chain[2], seq: 2 }] as AuditEvent[];
    const v = verifyChain(forged);
    expect(v.ok).toBe(false);
    expect(v.breaks[0]?.index).toBe(1);
  });

  it('removing the first event is detected when anchored to the previous position', () => {
    const chain = makeChain(4);
    const first = chain[0] as AuditEvent;
    const v = verifyChain(chain.slice(2), { seq: 1, hash: first.hash as string });
    expect(v.ok).toBe(false);
    expect(v.breaks[0]).toMatchObject({ index: 0, reason: 'seq-gap' });
  });

  it('an event from another epoch in the list is reported', () => {
    const chain = makeChain(3);
    const other = { ...(chain[2] as AuditEvent), epoch: 'ep2' };
    const v = verifyChain([chain[0] as AuditEvent, chain[1] as AuditEvent, other]);
    expect(v.breaks[0]).toMatchObject({ index: 2, reason: 'chain-mismatch' });
  });

  it('an unchained event is reported as such', () => {
    const v = verifyChain([{ type: 'x' }]);
    expect(v.breaks[0]?.reason).toBe('unchained');
  });
});
