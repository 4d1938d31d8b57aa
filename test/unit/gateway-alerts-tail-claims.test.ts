import { describe, expect, it } from 'vitest';
import type { EpochStatus } from '../../protocols/index.js';
import { TailClaims } from '../../gateway/alerts/tail-claims.js';

const status = (o: object) => Buffer.from(JSON.stringify({ state: 'online', id: 'ag', at: '2026-01-01T00:00:00Z', ...o }));

function epoch(agent: string, e: string, lastSeq: number, gaps: EpochStatus['gaps'] = []): EpochStatus {
  return { agent, epoch: e, lastSeq, lastSeen: '2026-01-01T00:00:00Z', received: lastSeq, gaps };
}

describe('TailClaims: what agents say they delivered, past what is stored, as one more gap', () => {
  it('adds the claimed tail past the stored lastSeq as a gap since the claim was first heard', () => {
    let now = Date.parse('2026-01-01T00:00:10Z');
    const tails = new TailClaims(() => now);
    tails.record('ag', status({ epoch: 'E1', delivered: 15 }));
    now += 5000;
    tails.record('ag', status({ epoch: 'E1', delivered: 15 })); // the same claim again: its time is kept
    const stored = [epoch('ag', 'E1', 10, [{ from: 4, to: 4, since: '2026-01-01T00:00:01Z' }]), epoch('other', 'E9', 3)];
    expect(tails.withTails(stored)).toEqual([
      epoch('ag', 'E1', 10, [
        { from: 4, to: 4, since: '2026-01-01T00:00:01Z' },
        { from: 11, to: 15, since: '2026-01-01T00:00:10.000Z' },
      ]),
      epoch('other', 'E9', 3),
    ]);
    expect(stored[0]?.gaps).toHaveLength(1); // the registry's own list is not changed
  });

  it('adds nothing once the events arrived, and a whole epoch the gateway never saw', () => {
    const tails = new TailClaims(() => Date.parse('2026-01-01T00:00:10Z'));
    tails.record('ag', status({ epoch: 'E1', delivered: 15 }));
    tails.record('new', status({ epoch: 'E2', delivered: 3 }));
    expect(tails.withTails([epoch('ag', 'E1', 15)])).toEqual([
      epoch('ag', 'E1', 15),
      { agent: 'new', epoch: 'E2', lastSeq: 0, lastSeen: '2026-01-01T00:00:10.000Z', received: 0, gaps: [{ from: 1, to: 3, since: '2026-01-01T00:00:10.000Z' }] },
    ]);
    // A claim for another epoch than the stored one does not touch it.
    expect(tails.withTails([epoch('ag', 'E0', 2)])[0]).toEqual(epoch('ag', 'E0', 2));
  });

  it('ignores a status that claims nothing or is not JSON', () => {
    const tails = new TailClaims();
    tails.record('a', Buffer.from('offline'));
    tails.record('b', status({ epoch: 'E1' }));
    tails.record('c', status({ epoch: 'E1', delivered: -1 }));
    tails.record('d', status({ epoch: 'bad epoch', delivered: 4 }));
    tails.record('e', Buffer.from('null'));
    expect(tails.withTails([])).toEqual([]);
  });
});
