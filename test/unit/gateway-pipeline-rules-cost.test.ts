import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../protocols/index.js';
import { DEFAULT_RULE_COST_LIMIT, Rules } from '../../gateway/pipeline/rules/rules.js';
import { parseGatewayConfig } from '../../gateway/config.js';

/**
 * A rule's evaluation is bounded (pipeline.ruleCostLimit; cost-meter.ts): a
 * loop over an event's list inside another such loop, or a `map` of a `map`,
 * runs out of its budget and is an error (not matched, counted), where before
 * it ran to the end — 10⁹ steps for a 64 KiB event, minutes with the whole
 * gateway stopped — or ran out of memory. The cases below stay small enough
 * that the old code finishes them, with no error.
 */

const ingest = { method: 'http' as const, peer: 'p', integrity: 'verified' as const };
const items = (n: number, extra: Record<string, unknown> = {}): AuditEvent => ({ type: 't', source: 's', data: { items: Array.from({ length: n }, () => 0), ...extra } });
const OVER = /exceeded its cost limit \(pipeline\.ruleCostLimit, \d+\); taken as no match/;

describe('rule cost limit', () => {
  it('stops a loop in a loop over an event list, as not matched, and the next rule still runs', () => {
    const rules = new Rules([
      { name: 'pairs', if: 'data.items.exists(x, data.items.exists(y, x + y == -1.0))', tag: 'pairs' },
      { name: 'after', if: 'type == "t"', tag: 'after' },
    ]);
    const verdict = rules.evaluate(items(2000), ingest);
    expect(verdict.errors).toEqual([{ rule: 'pairs', message: expect.stringMatching(OVER) as unknown }]);
    expect(verdict.tags).toEqual(['after']);
  });

  it('stops a map of a map (memory, not only time) and a native scan in a loop', () => {
    const rules = new Rules([
      { name: 'mapmap', if: 'size(data.items.map(x, data.items.map(y, y))) == 0', tag: 'x' },
      { name: 'scan', if: 'data.items.exists(x, x - 1.0 in data.items)', tag: 'x' },
      { name: 'text', if: 'data.items.exists(x, data.s.contains("y"))', tag: 'x' },
    ]);
    const verdict = rules.evaluate(items(2000, { s: 'x'.repeat(20_000) }), ingest);
    expect(verdict.errors.map((e) => e.rule)).toEqual(['mapmap', 'scan', 'text']);
    for (const e of verdict.errors) expect(e.message).toMatch(OVER);
  });

  it('a budget spent makes the verdict an error even where CEL would absorb the error (`|| true`)', () => {
    const rules = new Rules([{ name: 'masked', if: 'data.items.exists(x, data.items.exists(y, x + y == -1.0)) || true', tag: 'masked' }]);
    expect(rules.evaluate(items(2000), ingest)).toMatchObject({ tags: [], errors: [{ rule: 'masked' }] });
  });

  it('is per rule and per event: a linear rule over a large list fits, and the budget starts again each time', () => {
    const rules = new Rules([
      { name: 'linear', if: 'data.items.exists(x, x == 1.0)', tag: 'linear' },
      { name: 'pairs', if: 'data.items.exists(x, data.items.exists(y, x + y == 2.0))', tag: 'pairs' },
    ]);
    expect(rules.evaluate(items(15_000), ingest)).toMatchObject({ tags: [], errors: [{ rule: 'pairs' }] });
    const one = items(15_000);
    (one.data as { items: number[] }).items[14_999] = 1;
    expect(rules.evaluate(one, ingest)).toMatchObject({ tags: ['linear'] });
    // A small list: both run to their verdict, after events that spent everything.
    const small = items(50);
    (small.data as { items: number[] }).items[49] = 1;
    expect(rules.evaluate(small, ingest)).toEqual({ tags: ['linear', 'pairs'], alerts: [], droppedBy: undefined, errors: [] });
  });

  it('is set by pipeline.ruleCostLimit (default 100,000; at least 1,000)', () => {
    expect(DEFAULT_RULE_COST_LIMIT).toBe(100_000);
    const small = new Rules([{ name: 'linear', if: 'data.items.exists(x, x == 1.0)', tag: 'linear' }], { costLimit: 1000 });
    expect(small.evaluate(items(1000), ingest).errors).toEqual([{ rule: 'linear', message: expect.stringContaining('(pipeline.ruleCostLimit, 1000)') as unknown }]);
    expect(small.evaluate(items(100), ingest).errors).toEqual([]);
    expect(parseGatewayConfig({}).pipeline.ruleCostLimit).toBe(100_000);
    expect(parseGatewayConfig({ pipeline: { ruleCostLimit: 5000 } }).pipeline.ruleCostLimit).toBe(5000);
    expect(() => parseGatewayConfig({ pipeline: { ruleCostLimit: 10 } })).toThrow(/ruleCostLimit/);
  });
});
