// Which benches `npm run bench` runs and with what arguments. Full sizes fit
// the whole suite (3 runs) in 20 minutes on a 2-core box; --quick sizes fit a
// CI smoke run in under two minutes. A `*.mjs` in bench/ not listed here is
// still run, with no arguments, so a new bench is never silently skipped.

/** @typedef {{ name: string, full: string[], quick: string[], fullRuns?: number, timeoutS?: number }} BenchSpec */

/** @type {readonly BenchSpec[]} */
export const SUITE = Object.freeze([
  { name: 'agent-buffer', full: ['--events', '100000', '--warmup', '100000', '--restart-events', '1000000'], quick: ['--events', '20000', '--warmup', '5000', '--restart-events', '100000'] },
  { name: 'gateway-store', full: ['--events', '100000'], quick: ['--events', '20000'] },
  { name: 'gateway-mqtt', full: ['--clients', '1000', '--seconds', '10', '--warmup', '2'], quick: ['--clients', '100', '--seconds', '2', '--warmup', '1', '--http-clients', '4'] },
  // 1,000 devices are gateway-mqtt's run; fan-in adds 5,000 (the same generator).
  { name: 'fanin', full: ['--levels', '5000', '--seconds', '10', '--warmup', '2'], quick: ['--levels', '300', '--seconds', '2', '--warmup', '1'] },
  { name: 'rsyslog-compare', full: ['--lines', '100000'], quick: ['--lines', '10000'] },
  // One 10M-id run: the figure is a memory curve, not a timing, and a run takes minutes.
  { name: 'dedup-memory', full: ['--ids', '10000000'], quick: ['--ids', '200000'], fullRuns: 1, timeoutS: 1800 },
  { name: 'agent-e2e', full: ['--seconds', '8'], quick: ['--seconds', '3', '--cases', 'http-gateway,mqtt-gateway'] },
  // Settles past the file intake's idle back-off (5 s) before it measures.
  { name: 'agent-idle-files', full: ['--files', '500', '--warm-s', '10', '--measure-s', '10'], quick: ['--files', '100', '--warm-s', '6', '--measure-s', '2'] },
  // Each run is one round; the suite's runs give the spread.
  { name: 'agent-new-files', full: ['--files', '1000', '--rounds', '1'], quick: ['--files', '200', '--rounds', '1'] },
]);

/** The specs to run: SUITE order, then unknown benches found in bench/, filtered by `only` (names). */
export function planRuns(found, { only, quick, runs }) {
  const known = new Map(SUITE.map((s) => [s.name, s]));
  const specs = [...SUITE.filter((s) => found.includes(s.name)), ...found.filter((n) => !known.has(n)).sort().map((name) => ({ name, full: [], quick: [] }))];
  const unknown = only ? only.filter((n) => !found.includes(n)) : [];
  if (unknown.length > 0) throw new Error(`--only: no bench named ${unknown.join(', ')} in bench/ (have: ${found.join(', ')})`);
  return specs
    .filter((s) => !only || only.includes(s.name))
    .map((s) => ({ name: s.name, args: quick ? s.quick : s.full, runs: quick ? runs : Math.min(runs, s.fullRuns ?? runs), ...(!quick && s.timeoutS ? { timeoutS: s.timeoutS } : {}) }));
}
