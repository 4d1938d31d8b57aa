// The budgets of DESIGN §7 in one table. A figure names its budget by `id`;
// `judge` says met / missed. Budgets are reported, never asserted by CI: a
// slow shared machine must not fail a build (a crashed bench does).

/** @typedef {{ id: string, what: string, op: '>=' | '<=' | '<', limit: number, unit: string }} Budget */

/** @type {readonly Budget[]} */
export const BUDGETS = Object.freeze([
  { id: 'agent.intake.fsync', what: 'agent durable intake (fsync)', op: '>=', limit: 100_000, unit: 'ev/s' },
  { id: 'agent.rss.load', what: 'agent RSS under load', op: '<=', limit: 60, unit: 'MB' },
  { id: 'agent.rss.idle', what: 'agent RSS idle', op: '<=', limit: 40, unit: 'MB' },
  { id: 'agent.restart', what: 'restart with 1M buffered → first read', op: '<', limit: 1000, unit: 'ms' },
  { id: 'e2e.http', what: 'agent → gateway over HTTP', op: '>=', limit: 50_000, unit: 'ev/s' },
  { id: 'e2e.mqtt', what: 'agent → gateway over MQTT', op: '>=', limit: 30_000, unit: 'ev/s' },
  { id: 'gateway.mqtt.ratio', what: 'gateway / Mosquitto PUBACK rate, 1,000 devices QoS 1', op: '>=', limit: 0.7, unit: '×' },
  { id: 'gateway.mqtt.p99ratio', what: 'gateway / Mosquitto p99, 1,000 devices QoS 1', op: '<=', limit: 2, unit: '×' },
  // "Bounded, not proportional": an id held in RAM costs ≥ 50 B in V8, so a
  // growth under 10 B per id between 50% and 100% of the window means the
  // ids live on disk, not in the heap.
  { id: 'dedup.slope', what: 'gateway RSS growth per id, 50% → 100% of the dedup window', op: '<=', limit: 10, unit: 'B/id' },
]);

const byId = new Map(BUDGETS.map((b) => [b.id, b]));

/** The budget with this id, or undefined. */
export function budgetFor(id) {
  return byId.get(id);
}

/** 'met' | 'missed' | 'n/a' (no budget, or no value because every run crashed). */
export function judge(budgetId, value) {
  const b = budgetId === undefined ? undefined : byId.get(budgetId);
  if (b === undefined || typeof value !== 'number' || !Number.isFinite(value)) return 'n/a';
  if (b.op === '>=') return value >= b.limit ? 'met' : 'missed';
  if (b.op === '<=') return value <= b.limit ? 'met' : 'missed';
  return value < b.limit ? 'met' : 'missed';
}

/** "≥ 100000 ev/s" — the budget as the table prints it. */
export function budgetText(budgetId) {
  const b = budgetId === undefined ? undefined : byId.get(budgetId);
  if (b === undefined) return '—';
  const op = { '>=': '≥', '<=': '≤', '<': '<' }[b.op];
  return `${op} ${formatNumber(b.limit)} ${b.unit}`;
}

function formatNumber(n) {
  return Number.isInteger(n) && Math.abs(n) >= 10_000 ? n.toLocaleString('en-US') : String(n);
}
