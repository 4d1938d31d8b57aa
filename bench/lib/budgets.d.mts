export interface Budget {
  id: string;
  what: string;
  op: '>=' | '<=' | '<';
  limit: number;
  unit: string;
}
export type Verdict = 'met' | 'missed' | 'n/a';
export const BUDGETS: readonly Budget[];
export function budgetFor(id: string): Budget | undefined;
export function judge(budgetId: string | undefined, value: unknown): Verdict;
export function budgetText(budgetId: string | undefined): string;
