import type { AggregatedFigure } from './results.mjs';
export const FIGURE_HEADER: string[];
export function formatTable(header: readonly string[], rows: readonly (readonly unknown[])[]): string;
export function formatMarkdown(header: readonly string[], rows: readonly (readonly unknown[])[]): string;
export function figureRows(figures: readonly AggregatedFigure[]): string[][];
export function fmt(n: unknown): string;
