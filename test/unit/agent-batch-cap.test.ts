import { describe, expect, it } from 'vitest';
import { BatchCap } from '../../agent/push/batch-cap.js';

describe('BatchCap', () => {
  it('halves the batch size at each refusal of a batch larger than half the current cap, and tries full batches again after probeAfterMs', () => {
    let now = 0;
    const cap = new BatchCap(500, () => now, 1000);
    expect(cap.limit).toBe(500);
    expect(cap.refused(500)).toBe(true);
    expect(cap.limit).toBe(250);
    expect(cap.refused(500)).toBe(false); // a batch read before the cap: nothing new learnt
    expect(cap.refused(250)).toBe(true);
    expect(cap.limit).toBe(125);
    now = 999;
    expect(cap.limit).toBe(125);
    now = 1000; // probeAfterMs after the last refusal
    expect(cap.limit).toBe(500);
    expect(cap.refused(1)).toBe(false); // one event refused is about that event
    expect(cap.limit).toBe(500);
  });
});
