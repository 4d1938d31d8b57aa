export interface BenchSpec {
  name: string;
  full: string[];
  quick: string[];
  fullRuns?: number;
  timeoutS?: number;
}
export const SUITE: readonly BenchSpec[];
export function planRuns(
  found: readonly string[],
  opts: { only?: readonly string[] | undefined; quick: boolean; runs: number },
): { name: string; args: string[]; runs: number; timeoutS?: number }[];
