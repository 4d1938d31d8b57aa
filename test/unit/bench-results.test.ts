import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { aggregateFigures, buildReport, checkReport, resultStamp, writeReport, type Figure } from '../../bench/lib/results.mjs';
import { extractFigures } from '../../bench/lib/figures.mjs';
import { planRuns, SUITE } from '../../bench/lib/suite.mjs';

const mqtt = (rate: number, p99: number, mosqRate: number, mosqP99: number): Figure[] => [
  { id: 'gateway.mqtt.rate', label: 'rate', value: rate, unit: 'ev/s', budget: 'gateway.mqtt.ratio', budgetOn: 'ratio', reference: { label: 'Mosquitto', value: mosqRate } },
  { id: 'gateway.mqtt.p99', label: 'p99', value: p99, unit: 'ms', budget: 'gateway.mqtt.p99ratio', budgetOn: 'ratio', reference: { label: 'Mosquitto', value: mosqP99 } },
];

describe('aggregateFigures', () => {
  it('takes the median over runs and judges ratio budgets on the ratio of the medians', () => {
    const figs = aggregateFigures([mqtt(8000, 30, 10_000, 20), mqtt(7000, 50, 10_000, 20), mqtt(9000, 35, 12_000, 10)]);
    const [rate, p99] = figs;
    expect(rate?.value).toEqual({ median: 8000, min: 7000, max: 9000, n: 3 });
    expect(rate?.ratio).toBeCloseTo(0.8);
    expect(rate?.verdict).toBe('met');
    expect(p99?.ratio).toBeCloseTo(1.75);
    expect(p99?.verdict).toBe('met');
    expect(aggregateFigures([mqtt(6000, 50, 10_000, 20)])[0]?.verdict).toBe('missed');
    expect(aggregateFigures([mqtt(6000, 50, 10_000, 20)])[1]?.verdict).toBe('missed');
  });

  it('a figure missing from a crashed run counts the runs that have it', () => {
    const f: Figure = { id: 'x', label: 'x', value: 5, unit: 'MB' };
    const [agg] = aggregateFigures([[f], [], [{ ...f, value: 7 }]]);
    expect(agg?.value.n).toBe(2);
    expect(agg?.value.median).toBe(6);
    expect(agg?.verdict).toBe('n/a');
  });
});

describe('result file', () => {
  const startedAt = new Date('2026-11-26T14:05:09.123Z');
  const sample = () =>
    buildReport({
      startedAt,
      finishedAt: new Date(startedAt.getTime() + 60_000),
      options: { quick: true, runs: 1 },
      machine: { nproc: 2 },
      benches: [
        { name: 'ok', runs: [{ ok: true, seconds: 1 }] },
        { name: 'broken', runs: [{ ok: false, seconds: 2, error: 'exited with 1' }] },
      ],
      figures: aggregateFigures([[{ id: 'a', label: 'a', value: 1, unit: 'ev/s', reference: { label: 'r', value: 0 } }]]),
    });

  it('is well formed, names crashed benches, and stores NaN as null (JSON has no NaN)', () => {
    const report = sample();
    expect(checkReport(report)).toEqual([]);
    expect(report.crashed).toEqual(['broken']);
    const figure = JSON.parse(JSON.stringify(report)).figures[0];
    expect(figure.ratio).toBeNull();
    expect(figure.value).toEqual({ median: 1, min: 1, max: 1, n: 1 });
  });

  it('checkReport finds what is wrong', () => {
    expect(checkReport(null)).toEqual(['report is not an object']);
    const bad = { ...sample(), version: 99, figures: [{ id: 'a', label: 'a', verdict: 'maybe', value: { median: 5, min: 6, max: 7 } }] };
    const problems = checkReport(bad);
    expect(problems).toContain('version must be 1');
    expect(problems).toContain('figures[0].verdict must be met|missed|n/a');
    expect(problems).toContain('figures[0]: min ≤ median ≤ max');
  });

  it('is written as bench/results/<date>.json with a file-name-safe UTC stamp', async () => {
    expect(resultStamp(startedAt)).toBe('2026-11-26T14-05-09Z');
    const dir = await mkdtemp(join(tmpdir(), 'meteorzx-bench-results-'));
    try {
      const path = await writeReport(join(dir, 'results'), sample());
      expect(basename(path)).toBe('2026-11-26T14-05-09Z.json');
      expect(checkReport(JSON.parse(await readFile(path, 'utf8')))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('extractFigures', () => {
  it('maps gateway-mqtt results to the DESIGN §7 ratio budgets only at 1,000 devices', () => {
    const r = (clients: number) => ({ clients, mosquitto: { perSecond: 10_000, p99ms: 20 }, gatewayMqtt: { perSecond: 7500, p99ms: 30 }, gatewayHttp: { perSecond: 40_000, connections: 8, batch: 500 } });
    const at1000 = extractFigures('gateway-mqtt', r(1000));
    expect(at1000.map((f) => f.id)).toEqual(['gateway.mqtt.rate', 'gateway.mqtt.p99', 'gateway.http']);
    expect(at1000[0]?.budget).toBe('gateway.mqtt.ratio');
    expect(extractFigures('gateway-mqtt', r(100))[0]?.budget).toBeUndefined();
  });

  it('takes the restart budget only from a run with 1M buffered events', () => {
    const rate = { eventsPerSec: 1, rssMaxMB: 1, idleRssMB: 1 };
    const r = (head: number) => ({ params: { producers: '64', batch: '10' }, results: { rawSync: rate, rawNoSync: rate, bufferFsync: rate, bufferFsyncSingle: rate, bufferFsyncWithSink: rate, bufferOs: rate, restart: { head, openToFirstReadMs: 100 } } });
    expect(extractFigures('agent-buffer', r(1_000_000)).find((f) => f.id === 'agent.restart')?.budget).toBe('agent.restart');
    expect(extractFigures('agent-buffer', r(100_000)).find((f) => f.id === 'agent.restart')?.budget).toBeUndefined();
  });

  it('judges durable intake on the timed events after the warm-up, and reports the warm-up beside it without a budget', () => {
    const rate = (eventsPerSec: number, warmup?: number) => ({ eventsPerSec, rssMaxMB: 1, idleRssMB: 1, ...(warmup === undefined ? {} : { warmup: { events: 100_000, eventsPerSec: warmup } }) });
    const results = (fsync: ReturnType<typeof rate>) => ({ rawSync: rate(80_000, 70_000), rawNoSync: rate(90_000), bufferFsync: fsync, bufferFsyncSingle: rate(1), bufferFsyncWithSink: rate(1), bufferOs: rate(1), restart: { head: 0, openToFirstReadMs: 1 } });
    const figs = extractFigures('agent-buffer', { params: { producers: '64', batch: '10' }, results: results(rate(110_000, 95_000)) });
    expect(figs.find((f) => f.id === 'agent.intake.fsync')).toMatchObject({ value: 110_000, budget: 'agent.intake.fsync' });
    const warm = figs.find((f) => f.id === 'agent.intake.fsync.warmup');
    expect(warm).toMatchObject({ value: 95_000, reference: { value: 70_000 } });
    expect(warm?.budget).toBeUndefined();
    // A result file from before warm-ups existed still prints.
    const old = extractFigures('agent-buffer', { params: { producers: '64', batch: '10' }, results: results(rate(98_000)) });
    expect(old.map((f) => f.id)).not.toContain('agent.intake.fsync.warmup');
  });

  it('reports the buffer process’s private memory (RssAnon) beside its RSS, without a budget; older result files print without it', () => {
    const rate = (anon?: number) => ({ eventsPerSec: 1, rssMaxMB: 120, idleRssMB: 66, ...(anon === undefined ? {} : { anonMaxMB: anon, idleAnonMB: anon / 2 }) });
    const r = (fsync: ReturnType<typeof rate>) => ({ params: { producers: '64', batch: '10' }, results: { rawSync: rate(30), rawNoSync: rate(), bufferFsync: fsync, bufferFsyncSingle: rate(), bufferFsyncWithSink: rate(), bufferOs: rate(), restart: { head: 0, openToFirstReadMs: 1 } } });
    const figs = extractFigures('agent-buffer', r(rate(52)));
    expect(figs.find((f) => f.id === 'agent.buffer.rss.load')).toMatchObject({ value: 120, budget: 'agent.rss.load' });
    const load = figs.find((f) => f.id === 'agent.buffer.anon.load');
    expect(load).toMatchObject({ value: 52, reference: { value: 30 } });
    expect(load?.budget).toBeUndefined();
    expect(figs.find((f) => f.id === 'agent.buffer.anon.idle')).toMatchObject({ value: 26 });
    expect(extractFigures('agent-buffer', r(rate())).map((f) => f.id)).not.toContain('agent.buffer.anon.load');
  });

  it('reports the agent’s private memory (RssAnon) from agent-e2e beside its RSS, without a budget', () => {
    const row = (c: string, anon?: number) => ({ case: c, runs: 1, e2ePerSec: 1, p99ms: 1, agentCpuSecPerM: 1, sinkCpuSecPerM: 1, agentMaxRssMB: 170, agentIdleRssMB: 70, ...(anon === undefined ? {} : { agentMaxAnonMB: anon, agentIdleAnonMB: 25 }) });
    const figs = extractFigures('agent-e2e', { rows: [row('http-gateway', 120), row('mqtt-gateway', 110)] });
    expect(figs.find((f) => f.id === 'e2e.mqtt.rss.load')).toMatchObject({ value: 170, budget: 'agent.rss.load' });
    expect(figs.find((f) => f.id === 'e2e.mqtt.anon.load')).toMatchObject({ value: 110 });
    expect(figs.find((f) => f.id === 'e2e.http.anon.load')?.budget).toBeUndefined();
    expect(figs.find((f) => f.id === 'e2e.anon.idle')).toMatchObject({ value: 25 });
    const old = extractFigures('agent-e2e', { rows: [row('http-gateway'), row('mqtt-gateway')] });
    expect(old.map((f) => f.id).filter((id) => id.includes('anon'))).toEqual([]);
  });

  it('throws on a result without the fields the table needs, and passes a bench’s own figures through', () => {
    expect(() => extractFigures('gateway-store', {})).toThrow();
    const own: Figure[] = [{ id: 'e2e.http', label: 'HTTP', value: 1, unit: 'ev/s', budget: 'e2e.http' }];
    expect(extractFigures('some-new-bench', { figures: own })).toEqual(own);
    expect(extractFigures('some-new-bench', { other: 1 })).toEqual([]);
  });
});

describe('planRuns', () => {
  const found = ['gateway-store', 'agent-buffer', 'zzz-new', 'dedup-memory'];

  it('keeps the suite order, adds unknown benches, caps the 10M-id run at one', () => {
    const plan = planRuns(found, { quick: false, runs: 3 });
    expect(plan.map((p) => p.name)).toEqual(['agent-buffer', 'gateway-store', 'dedup-memory', 'zzz-new']);
    expect(plan.find((p) => p.name === 'dedup-memory')).toMatchObject({ runs: 1, args: ['--ids', '10000000'] });
    expect(plan.find((p) => p.name === 'agent-buffer')?.runs).toBe(3);
  });

  it('--quick uses the quick arguments; --only filters and rejects unknown names', () => {
    const quick = planRuns(found, { quick: true, runs: 1, only: ['agent-buffer'] });
    expect(quick).toEqual([{ name: 'agent-buffer', args: SUITE.find((s) => s.name === 'agent-buffer')?.quick, runs: 1 }]);
    expect(() => planRuns(found, { quick: true, runs: 1, only: ['nope'] })).toThrow(/no bench named nope/);
  });
});
