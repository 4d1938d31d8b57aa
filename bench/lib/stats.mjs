// Small statistics for benchmark figures: every figure in the suite's table
// is the median of several runs, printed with its min and max so a reader
// sees the spread a loaded machine causes.

/** Median of finite numbers (mean of the middle two for an even count); NaN when there are none. */
export function median(values) {
  const xs = finite(values).sort((a, b) => a - b);
  if (xs.length === 0) return Number.NaN;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

/** Nearest-rank percentile (p in 0..100) of unsorted numbers; NaN when empty. */
export function percentile(values, p) {
  const xs = finite(values).sort((a, b) => a - b);
  if (xs.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * xs.length);
  return xs[Math.min(xs.length - 1, Math.max(0, rank - 1))];
}

/** `{median, min, max, n}` of the finite numbers among `values` (runs that crashed give none). */
export function summarize(values) {
  const xs = finite(values);
  if (xs.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** Least-squares slope of y over x (e.g. bytes of RSS per id ingested); NaN with fewer than two distinct x. */
export function slope(points) {
  const ps = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (ps.length < 2) return Number.NaN;
  const mx = ps.reduce((s, p) => s + p.x, 0) / ps.length;
  const my = ps.reduce((s, p) => s + p.y, 0) / ps.length;
  const sxx = ps.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  if (sxx === 0) return Number.NaN;
  return ps.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0) / sxx;
}

function finite(values) {
  return values.filter((v) => typeof v === 'number' && Number.isFinite(v));
}
