import type { Figure } from './results.mjs';
export const EXTRACTORS: Record<string, (result: never) => Figure[]>;
export function extractFigures(name: string, result: unknown): Figure[];
