import type { Summary } from './stats.mjs';
import type { Verdict } from './budgets.mjs';

/** One figure of one run, as an extractor returns it. */
export interface Figure {
  id: string;
  label: string;
  value: number;
  unit: string;
  budget?: string;
  budgetOn?: 'ratio';
  reference?: { label: string; value: number };
  note?: string;
}
export interface AggregatedFigure {
  id: string;
  label: string;
  unit: string;
  budget: string | undefined;
  budgetOn?: 'ratio';
  value: Summary;
  verdict: Verdict;
  reference?: { label: string; value: Summary };
  ratio: number;
  note?: string;
}
export interface BenchEntry {
  name: string;
  args?: string[];
  runs: { ok: boolean; seconds: number; error?: string; result?: unknown; logTail?: string }[];
}
export interface Report {
  suite: 'meteorzx-bench';
  version: number;
  startedAt: string;
  finishedAt: string;
  options: unknown;
  machine: unknown;
  benches: BenchEntry[];
  figures: unknown[];
  crashed: string[];
}
export const REPORT_VERSION: number;
export function aggregateFigures(runs: readonly (readonly Figure[])[]): AggregatedFigure[];
export function resultStamp(date: Date): string;
export function buildReport(input: {
  startedAt: Date;
  finishedAt: Date;
  options: unknown;
  machine: unknown;
  benches: BenchEntry[];
  figures: AggregatedFigure[];
}): Report;
export function checkReport(report: unknown): string[];
export function writeReport(dir: string, report: Report): Promise<string>;
