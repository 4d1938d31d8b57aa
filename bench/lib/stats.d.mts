export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}
export function median(values: readonly unknown[]): number;
export function percentile(values: readonly unknown[], p: number): number;
export function summarize(values: readonly unknown[]): Summary;
export function slope(points: readonly { x: number; y: number }[]): number;
