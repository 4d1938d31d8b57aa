import { describe, expect, it } from 'vitest';
import { PullHoles } from '../../cli/pull-holes.js';

describe('PullHoles (meteorzx pull)', () => {
  it('names each seq range stepped over, and sums them up', () => {
    const warnings: string[] = [];
    const holes = new PullHoles(4, (l) => warnings.push(l));
    for (const seq of [5, 6, 9, 10, 20]) holes.line(seq);
    holes.holesTo(25);
    expect(holes.holes).toEqual([
      [7, 8],
      [11, 19],
      [21, 25],
    ]);
    expect(warnings).toHaveLength(2); // 21-25 may go on in the next answer
    expect(warnings[0]).toContain('seqs 7-8 are not in the agent');
    expect(holes.summary()).toBe("16 seqs in 3 ranges (7-8, 11-19, 21-25) were holes in the agent's buffer and are not in the output");
    expect(warnings[2]).toContain('seqs 21-25 are not in the agent');
  });

  it('one hole met over two answers (one ending in it, the next stepping over its rest) is one range, named once', () => {
    const warnings: string[] = [];
    const holes = new PullHoles(0, (l) => warnings.push(l));
    for (const seq of [1, 2, 3, 4, 5]) holes.line(seq);
    holes.holesTo(9);
    expect(warnings).toEqual([]); // it may go on in the next answer
    holes.line(11);
    expect(holes.holes).toEqual([[6, 10]]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('seqs 6-10 are not');
  });

  it('says nothing for a pull without holes, and a range already passed is no hole', () => {
    const warnings: string[] = [];
    const holes = new PullHoles(0, (l) => warnings.push(l));
    for (const seq of [1, 2, 3]) holes.line(seq);
    holes.holesTo(2);
    expect(holes.summary()).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it('names the first ten ranges, then only counts them (bounded output for a badly damaged buffer)', () => {
    const warnings: string[] = [];
    const holes = new PullHoles(0, (l) => warnings.push(l));
    for (let i = 1; i <= 25; i += 1) holes.line(i * 2);
    expect(warnings).toHaveLength(10);
    expect(holes.summary()).toMatch(/^25 seqs in 25 ranges \(1, 3, .*, 19 and 15 more\)/);
  });
});
