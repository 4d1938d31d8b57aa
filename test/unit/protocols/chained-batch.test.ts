import { describe, expect, it } from 'vitest';
import { chainEvent, DEFAULT_LIMITS, type AuditEvent } from '../../../protocols/index.js';
import { MIN_CHAINED_ITEM_BYTES, readChainedBatch } from '../../../protocols/chained-batch.js';

const limits = { ...DEFAULT_LIMITS, maxBatchEvents: 10 };

function chain(n: number, agent = 'ag-1'): AuditEvent[] {
  let prev: string | undefined;
  return Array.from({ length: n }, (_, i) => {
    const e = chainEvent({ id: `e-${i + 1}`, type: 't', source: agent, time: '2026-01-01T00:00:00Z', agent, epoch: 'E1', seq: i + 1 }, prev);
    prev = e.hash;
    return e;
  });
}

const bytes = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('readChainedBatch: an agent batch over maxBatchEvents', () => {
  it('reads every item of the agent\'s chained batch, in slices of at most maxBatchEvents', () => {
    const batch = readChainedBatch(bytes(chain(25)), limits, 'ag-1', { keepText: true });
    expect(batch?.count).toBe(25);
    const slices = [...(batch?.slices ?? [])];
    expect(slices.map((s) => s.length)).toEqual([10, 10, 5]);
    const items = slices.flat();
    expect(items.map((i) => i.index)).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect(items.map((i) => (i.value as AuditEvent).seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(items.every((i) => typeof i.text === 'string')).toBe(true);
  });

  it('is not taken for a plain device batch, another agent\'s events, or a payload that is not an array', () => {
    const plain = Array.from({ length: 25 }, (_, i) => ({ type: 't', data: { pad: 'p'.repeat(100), i } }));
    expect(readChainedBatch(bytes(plain), limits, 'ag-1')).toBeUndefined();
    expect(readChainedBatch(bytes(chain(25, 'ag-2')), limits, 'ag-1')).toBeUndefined();
    expect(readChainedBatch(Buffer.from(chain(25).map((e) => JSON.stringify(e)).join('\n')), limits, 'ag-1')).toBeUndefined();
  });

  it('rejects alone each item past a chained first one that is not a chained event of the agent, and malformed items', () => {
    const events: unknown[] = chain(15);
    events[3] = { type: 'smuggled', data: { pad: 'x'.repeat(200) } };
    events[12] = { ...(events[12] as object), agent: 'ag-2' };
    const text = JSON.stringify(events).replace('"e-15"', '"e-15"x');
    const items = [...(readChainedBatch(Buffer.from(text), limits, 'ag-1')?.slices ?? [])].flat();
    expect(items).toHaveLength(15);
    expect(items.filter((i) => i.error !== undefined).map((i) => [i.index, i.error])).toEqual([
      [3, expect.stringMatching(/^batch has more than 10 events \(maxBatchEvents\); past that only chained events of agent "ag-1"/)],
      [12, expect.stringMatching(/^batch has more than 10 events/)],
      [14, expect.stringMatching(/^malformed JSON: /)],
    ]);
  });

  it('reads no more items than the payload\'s bytes could hold chained events', () => {
    // A chained first event, then 2,000 empty objects: 2,000 items in ≈ 4.4 KB, far more than 4.4 KB / 100 B.
    const text = `[${JSON.stringify(chain(1)[0])}${',{}'.repeat(2000)}]`;
    expect(Buffer.byteLength(text) / MIN_CHAINED_ITEM_BYTES).toBeLessThan(2000);
    expect(readChainedBatch(Buffer.from(text), limits, 'ag-1')).toBeUndefined();
  });
});
