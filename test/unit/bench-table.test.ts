import { describe, expect, it } from 'vitest';
import { FIGURE_HEADER, figureRows, fmt, formatMarkdown, formatTable } from '../../bench/lib/table.mjs';
import { budgetText, judge } from '../../bench/lib/budgets.mjs';
import { aggregateFigures } from '../../bench/lib/results.mjs';

describe('bench table', () => {
  it('aligns columns, numbers to the right', () => {
    const out = formatTable(['name', 'value'], [['a', '5'], ['longer name', '12345']]).split('\n');
    expect(out).toEqual(['name         value', '-----------  -----', 'a                5', 'longer name  12345']);
  });

  it('renders Markdown with right-aligned numeric columns and escaped pipes', () => {
    const md = formatMarkdown(['figure', 'value'], [['a|b', '1.5'], ['c', '—']]);
    expect(md.split('\n')).toEqual(['| figure | value |', '|---|---:|', '| a\\|b | 1.5 |', '| c | — |']);
  });

  it('formats numbers by magnitude', () => {
    expect(fmt(123456.7)).toBe('123457');
    expect(fmt(152.4)).toBe('152');
    expect(fmt(81.04)).toBe('81.0');
    expect(fmt(4.004)).toBe('4.00');
    expect(fmt(0.1234)).toBe('0.123');
    expect(fmt(Number.NaN)).toBe('—');
  });

  it('one row per figure: median, spread, budget, verdict, reference and ratio', () => {
    const figures = aggregateFigures([
      [{ id: 'agent.intake.fsync', label: 'durable intake', value: 90_000, unit: 'ev/s', budget: 'agent.intake.fsync', reference: { label: 'raw sync', value: 60_000 } }],
      [{ id: 'agent.intake.fsync', label: 'durable intake', value: 120_000, unit: 'ev/s', budget: 'agent.intake.fsync', reference: { label: 'raw sync', value: 80_000 } }],
      [{ id: 'agent.intake.fsync', label: 'durable intake', value: 110_000, unit: 'ev/s', budget: 'agent.intake.fsync', reference: { label: 'raw sync', value: 70_000 } }],
    ]);
    const rows = figureRows(figures);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toHaveLength(FIGURE_HEADER.length);
    expect(rows[0]).toEqual(['durable intake', '110000', '90000–120000', 'ev/s', '≥ 100,000 ev/s', 'met', 'raw sync', '70000', '1.57×']);
  });
});

describe('bench budgets', () => {
  it('judges each direction and has no verdict without a budget or a value', () => {
    expect(judge('agent.intake.fsync', 100_000)).toBe('met');
    expect(judge('agent.intake.fsync', 99_999)).toBe('missed');
    expect(judge('agent.rss.idle', 40)).toBe('met');
    expect(judge('agent.rss.idle', 40.1)).toBe('missed');
    expect(judge('agent.restart', 1000)).toBe('missed');
    expect(judge('agent.restart', 999)).toBe('met');
    expect(judge(undefined, 5)).toBe('n/a');
    expect(judge('agent.restart', Number.NaN)).toBe('n/a');
    expect(budgetText('gateway.mqtt.ratio')).toBe('≥ 0.7 ×');
    expect(budgetText(undefined)).toBe('—');
  });

  it('holds every DESIGN §7 budget', async () => {
    const { BUDGETS } = await import('../../bench/lib/budgets.mjs');
    const limits = Object.fromEntries(BUDGETS.map((b) => [b.id, b.limit]));
    expect(limits).toMatchObject({
      'agent.intake.fsync': 100_000,
      'agent.rss.load': 60,
      'agent.rss.idle': 40,
      'agent.restart': 1000,
      'e2e.http': 50_000,
      'e2e.mqtt': 30_000,
      'gateway.mqtt.ratio': 0.7,
      'gateway.mqtt.p99ratio': 2,
    });
  });
});
