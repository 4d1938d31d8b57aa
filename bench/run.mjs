#!/usr/bin/env node
// `npm run bench`: runs every benchmark in bench/ as its own child process
// (so one crash is reported and the rest still run), each several times,
// then prints ONE table — figure, median (min–max), budget, met/missed, and
// the reference measured in the same run with the ratio — and writes
// bench/results/<date>.json. Budgets are reported, not asserted: the exit
// status is 1 only when a bench crashed. Builds dist/ first (the benches
// import it) unless --no-build.
//
//   npm run bench [-- --quick] [--runs N] [--only a,b] [--markdown] [--no-build] [--list] [--timeout-s S]
//   npm run bench -- --from bench/results/<date>.json [--markdown]     # the table of an earlier run
import { spawn, execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { ROOT } from './lib/processes.mjs';
import { planRuns } from './lib/suite.mjs';
import { extractFigures } from './lib/figures.mjs';
import { aggregateFigures, buildReport, checkReport, writeReport } from './lib/results.mjs';
import { FIGURE_HEADER, figureRows, formatMarkdown, formatTable } from './lib/table.mjs';
import { machineInfo } from './lib/machine.mjs';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    only: { type: 'string' },
    markdown: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    // Per run of one bench; a hung bench is killed and reported as crashed.
    'timeout-s': { type: 'string' },
    // Where the benches are (results go to <dir>/results); the runner's own tests point it at fixtures.
    dir: { type: 'string', default: join(ROOT, 'bench') },
    // Print the table of an earlier result file again (figures re-extracted from its raw results); runs nothing.
    from: { type: 'string' },
  },
});
const quick = args.quick;
const runs = Number(args.runs ?? (quick ? 1 : 3));
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
const defaultTimeoutMs = Number(args['timeout-s'] ?? (quick ? 180 : 900)) * 1000;
const benchDir = args.dir;
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

if (args.from !== undefined) {
  const old = JSON.parse(await readFile(args.from, 'utf8'));
  const again = old.benches.flatMap((b) => b.runs.filter((r) => r.ok).map((r) => extractFigures(b.name, r.result)));
  const m = old.machine;
  console.log(`${old.options.quick ? 'quick' : 'full'}, ${old.options.runs} run(s) per figure, ${old.startedAt} → ${old.finishedAt}`);
  console.log(`${m.nproc} × ${m.cpuModel}, ${m.memGB} GB RAM, ${m.disk}; load ${m.loadavg.join(' ')} → ${m.loadavgEnd.join(' ')}; Node ${m.node}\n`);
  const rows = figureRows(aggregateFigures(again));
  console.log(args.markdown ? formatMarkdown(FIGURE_HEADER, rows) : formatTable(FIGURE_HEADER, rows));
  process.exit(0);
}

const found = (await readdir(benchDir)).filter((f) => f.endsWith('.mjs') && f !== 'run.mjs').map((f) => f.slice(0, -4));
const plan = planRuns(found, { only: args.only?.split(',').filter(Boolean), quick, runs });
if (args.list) {
  for (const p of plan) console.log(`${p.name}  ${p.runs}× ${p.args.join(' ')}`);
  process.exit(0);
}
if (!args['no-build']) {
  log('building dist/ (npx tsc -p tsconfig.json)');
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'inherit' });
  } catch {
    // tsc still emits on type errors; a bench that then fails shows up as crashed.
    log('tsc reported errors; running on what it emitted');
  }
}

/** Runs one bench once; resolves `{ok, seconds, result?, error?, log}` and never throws. */
async function runOnce(name, argv, work, k, timeoutMs) {
  const resultPath = join(work, `${name}-${k}.json`);
  const logPath = join(work, `${name}-${k}.log`);
  const fallback = join(benchDir, 'results', `${name}.json`);
  const t0 = performance.now();
  const wall0 = Date.now();
  const out = [];
  // Own process group, so a hung bench is killed with the gateway or broker it spawned.
  const p = spawn(process.execPath, [join(benchDir, `${name}.mjs`), ...argv], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, METEORZX_BENCH_RESULT: resultPath } });
  current = p;
  p.stdout.on('data', (b) => out.push(b));
  p.stderr.on('data', (b) => out.push(b));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(p, 'SIGKILL');
  }, timeoutMs);
  const code = await new Promise((resolve) => {
    p.once('error', (err) => resolve(err.message));
    p.once('close', (c, signal) => resolve(c ?? signal));
  });
  clearTimeout(timer);
  current = undefined;
  const seconds = (performance.now() - t0) / 1000;
  const text = Buffer.concat(out).toString('utf8');
  await writeFile(logPath, text);
  const tail = text.trim().split('\n').slice(-15).join('\n');
  if (code !== 0) return { ok: false, seconds, error: timedOut ? `killed after ${timeoutMs / 1000} s` : `exited with ${code}`, tail };
  // Benches of this suite write $METEORZX_BENCH_RESULT; the older ones bench/results/<name>.json.
  let result;
  for (const path of [resultPath, fallback]) {
    try {
      if (path === fallback && (await stat(path)).mtimeMs < wall0 - 1000) continue;
      result = JSON.parse(await readFile(path, 'utf8'));
      break;
    } catch {
      /* try the next place */
    }
  }
  if (result === undefined) return { ok: false, seconds, error: 'exited 0 but wrote no result JSON', tail };
  try {
    return { ok: true, seconds, result, figures: extractFigures(name, result) };
  } catch (err) {
    return { ok: false, seconds, error: `result JSON lacks what the table needs: ${err.message}`, tail };
  }
}

let current;
function killGroup(p, signal) {
  try {
    process.kill(-p.pid, signal);
  } catch {
    /* already gone */
  }
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (current) killGroup(current, 'SIGKILL');
    process.exit(130);
  });
}

const startedAt = new Date();
const machine = machineInfo();
const work = await mkdtemp(join(tmpdir(), 'meteorzx-bench-run-'));
const benches = [];
const figureRuns = [];
try {
  for (const spec of plan) {
    const entry = { name: spec.name, args: spec.args, runs: [] };
    benches.push(entry);
    for (let k = 1; k <= spec.runs; k += 1) {
      log(`${spec.name} run ${k}/${spec.runs}: node bench/${spec.name}.mjs ${spec.args.join(' ')}`);
      const r = await runOnce(spec.name, spec.args, work, k, spec.timeoutS && !args['timeout-s'] ? spec.timeoutS * 1000 : defaultTimeoutMs);
      entry.runs.push({ ok: r.ok, seconds: Number(r.seconds.toFixed(1)), ...(r.ok ? { result: r.result } : { error: r.error, logTail: r.tail }) });
      if (r.ok) {
        figureRuns.push(r.figures);
        log(`${spec.name} run ${k}: ok in ${r.seconds.toFixed(1)} s`);
      } else {
        log(`${spec.name} run ${k}: CRASHED (${r.error}) after ${r.seconds.toFixed(1)} s; last output:\n${r.tail}`);
      }
    }
  }
} finally {
  await rm(work, { recursive: true, force: true });
}

const figures = aggregateFigures(figureRuns);
machine.loadavgEnd = loadavg().map((l) => Number(l.toFixed(2)));
const report = buildReport({ startedAt, finishedAt: new Date(), options: { quick, runs, only: args.only ?? null }, machine, benches, figures });
const problems = checkReport(report);
if (problems.length > 0) log(`result file shape problems: ${problems.join('; ')}`);
const path = await writeReport(join(benchDir, 'results'), report);

const rows = figureRows(figures);
console.log(`\nMeteorZX benchmarks — ${quick ? 'quick' : 'full'}, ${runs} run(s) per figure (median, min–max), ${startedAt.toISOString()}`);
console.log(`${machine.nproc} × ${machine.cpuModel}, ${machine.memGB} GB RAM, ${machine.disk}; load ${machine.loadavg.join(' ')} → ${machine.loadavgEnd.join(' ')}; Node ${machine.node}\n`);
console.log(args.markdown ? formatMarkdown(FIGURE_HEADER, rows) : formatTable(FIGURE_HEADER, rows));
const verdicts = figures.filter((f) => f.verdict !== 'n/a');
console.log(`\nbudgets: ${verdicts.filter((f) => f.verdict === 'met').length} met, ${verdicts.filter((f) => f.verdict === 'missed').length} missed (reported, not asserted)`);
for (const b of benches) console.log(`${b.name}: ${b.runs.map((r) => (r.ok ? `ok ${r.seconds}s` : `CRASHED: ${r.error}`)).join(', ')}`);
console.log(`wrote ${path}`);
process.exit(report.crashed.length > 0 || problems.length > 0 ? 1 : 0);
