// Plain-text and Markdown tables for the suite's one summary table.
import { budgetText } from './budgets.mjs';

/** Pads `rows` (arrays of cells) into aligned columns; numeric-looking cells are right-aligned. */
export function formatTable(header, rows) {
  const all = [header, ...rows].map((r) => r.map((c) => String(c ?? '')));
  const widths = header.map((_, i) => Math.max(...all.map((r) => [...(r[i] ?? '')].length)));
  const line = (r) =>
    r
      .map((c, i) => (isNumeric(c) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(all[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(line)].join('\n');
}

/** The same table as GitHub Markdown (for docs/performance.md). */
export function formatMarkdown(header, rows) {
  const esc = (c) => String(c ?? '').replaceAll('|', '\\|');
  const align = header.map((_, i) => (rows.length > 0 && rows.every((r) => isNumeric(String(r[i] ?? '')) || r[i] === '—') ? '---:' : '---'));
  return [`| ${header.map(esc).join(' | ')} |`, `|${align.join('|')}|`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

export const FIGURE_HEADER = ['figure', 'median', 'min–max', 'unit', 'budget', 'verdict', 'reference (same run)', 'ref median', 'ratio'];

/** One row per aggregated figure (see results.mjs `aggregateFigures`). */
export function figureRows(figures) {
  return figures.map((f) => [
    f.label,
    fmt(f.value.median),
    f.value.n > 1 ? `${fmt(f.value.min)}–${fmt(f.value.max)}` : '—',
    f.unit,
    budgetText(f.budget),
    f.verdict === 'n/a' ? '—' : f.verdict,
    f.reference?.label ?? '—',
    f.reference ? fmt(f.reference.value.median) : '—',
    Number.isFinite(f.ratio) ? `${fmt(f.ratio)}×` : '—',
  ]);
}

/** Numbers as a table shows them: integers with no decimals, small values with 2–3 significant places. */
export function fmt(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  const a = Math.abs(n);
  if (a >= 1000) return String(Math.round(n));
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  return n.toFixed(3);
}

function isNumeric(c) {
  return /^-?[\d.,]+(×|%)?$/.test(c) || /^[\d.]+–[\d.]+$/.test(c);
}
