// The suite's result file: `bench/results/<date>.json`. Each bench run yields
// figures `{id, label, value, unit, budget?, reference?: {label, value}}`;
// the runner groups them by id over the runs and keeps median, min and max.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { summarize } from './stats.mjs';
import { judge } from './budgets.mjs';

export const REPORT_VERSION = 1;

/**
 * Groups per-run figures by id (first-seen order) into
 * `{id, label, unit, budget, value: {median,min,max,n}, verdict, reference?, ratio}`.
 * `ratio` is value / reference (medians), the "how far from the peer" column;
 * a figure with `budgetOn: 'ratio'` is judged on it.
 */
export function aggregateFigures(runs) {
  const groups = new Map();
  for (const figures of runs) {
    for (const f of figures) {
      let g = groups.get(f.id);
      if (g === undefined) {
        g = { first: f, values: [], refs: [] };
        groups.set(f.id, g);
      }
      g.values.push(f.value);
      if (f.reference !== undefined) g.refs.push(f.reference.value);
    }
  }
  return [...groups.entries()].map(([id, g]) => {
    const value = summarize(g.values);
    const out = { id, label: g.first.label, unit: g.first.unit, budget: g.first.budget, value };
    if (g.first.reference !== undefined) {
      const ref = summarize(g.refs);
      out.reference = { label: g.first.reference.label, value: ref };
      out.ratio = ref.median !== 0 ? value.median / ref.median : Number.NaN;
    } else {
      out.ratio = Number.NaN;
    }
    // Budgets such as "≥ 0.7× Mosquitto" judge the ratio to the reference, not the value.
    if (g.first.budgetOn === 'ratio') out.budgetOn = 'ratio';
    out.verdict = judge(g.first.budget, g.first.budgetOn === 'ratio' ? out.ratio : value.median);
    if (g.first.note !== undefined) out.note = g.first.note;
    return out;
  });
}

/** `2026-11-26T14-05-09Z` — a file-name-safe UTC timestamp. */
export function resultStamp(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z').replaceAll(':', '-');
}

/** The report object written to disk (see `checkReport` for its shape). */
export function buildReport({ startedAt, finishedAt, options, machine, benches, figures }) {
  return {
    suite: 'meteorzx-bench',
    version: REPORT_VERSION,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    options,
    machine,
    benches,
    figures: figures.map((f) => ({ ...f, ratio: Number.isFinite(f.ratio) ? f.ratio : null, value: nullNaN(f.value), ...(f.reference ? { reference: { ...f.reference, value: nullNaN(f.reference.value) } } : {}) })),
    crashed: benches.filter((b) => b.runs.some((r) => !r.ok)).map((b) => b.name),
  };
}

/** Problems with a report's shape, [] when it is well formed (the unit tests and the runner both use it). */
export function checkReport(report) {
  const problems = [];
  const need = (cond, msg) => cond || problems.push(msg);
  need(report !== null && typeof report === 'object', 'report is not an object');
  if (problems.length > 0) return problems;
  need(report.suite === 'meteorzx-bench', 'suite must be "meteorzx-bench"');
  need(report.version === REPORT_VERSION, `version must be ${REPORT_VERSION}`);
  need(!Number.isNaN(Date.parse(report.startedAt)), 'startedAt must be a date');
  need(Array.isArray(report.benches), 'benches must be an array');
  need(Array.isArray(report.figures), 'figures must be an array');
  need(Array.isArray(report.crashed), 'crashed must be an array');
  for (const [i, b] of (Array.isArray(report.benches) ? report.benches : []).entries()) {
    need(typeof b.name === 'string', `benches[${i}].name must be a string`);
    need(Array.isArray(b.runs) && b.runs.every((r) => typeof r.ok === 'boolean' && typeof r.seconds === 'number'), `benches[${i}].runs must be [{ok, seconds}]`);
  }
  for (const [i, f] of (Array.isArray(report.figures) ? report.figures : []).entries()) {
    need(typeof f.id === 'string' && typeof f.label === 'string', `figures[${i}] needs id and label`);
    need(['met', 'missed', 'n/a'].includes(f.verdict), `figures[${i}].verdict must be met|missed|n/a`);
    for (const k of ['median', 'min', 'max']) need(f.value?.[k] === null || typeof f.value?.[k] === 'number', `figures[${i}].value.${k} must be a number or null`);
    need(f.value?.median === null || (f.value.min <= f.value.median && f.value.median <= f.value.max), `figures[${i}]: min ≤ median ≤ max`);
  }
  return problems;
}

/** Writes the report as `<dir>/<stamp>.json`; returns the path. */
export async function writeReport(dir, report) {
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${resultStamp(new Date(report.startedAt))}.json`);
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`);
  return path;
}

function nullNaN(s) {
  const o = {};
  for (const [k, v] of Object.entries(s)) o[k] = typeof v === 'number' && !Number.isFinite(v) ? null : v;
  return o;
}
