import type { z } from 'zod';
import { describeValue, type ConfigIssue, type ConfigPath } from './issues.js';

const EXPECTED: Record<string, string> = {
  object: 'a mapping (key: value)',
  record: 'a mapping (key: value)',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
};

/**
 * Turns zod's issues into config issues with messages written for someone
 * editing a YAML file. One collector per parse: the error map remembers the
 * keys each object accepts so an unknown key can suggest the one meant.
 */
export function createIssueCollector(): {
  errorMap: z.core.$ZodErrorMap;
  toIssues(issues: readonly z.core.$ZodIssue[]): ConfigIssue[];
} {
  const knownKeys = new Map<string, readonly string[]>();

  const errorMap: z.core.$ZodErrorMap = (iss) => {
    switch (iss.code) {
      case 'invalid_type':
        if (iss.input === undefined) return 'required';
        return `expected ${EXPECTED[iss.expected] ?? iss.expected}, got ${describeValue(iss.input)}`;
      case 'invalid_value':
        return iss.values.length === 1
          ? `expected ${String(iss.values[0])}, got ${describeValue(iss.input)}`
          : `expected one of ${iss.values.map(String).join(', ')}, got ${describeValue(iss.input)}`;
      case 'too_small':
        return boundMessage('at least', 'greater than', iss.origin, iss.minimum, iss.inclusive);
      case 'too_big':
        return boundMessage('at most', 'less than', iss.origin, iss.maximum, iss.inclusive);
      case 'not_multiple_of':
        return `must be a multiple of ${String(iss.divisor)}`;
      case 'unrecognized_keys': {
        const shape = (iss.inst as { shape?: Record<string, unknown> } | undefined)?.shape;
        if (shape) knownKeys.set(pathKey(toPath(iss.path)), Object.keys(shape));
        return 'unknown key';
      }
      case 'invalid_union': {
        const discriminator = (iss as { discriminator?: unknown }).discriminator;
        const options = (iss as { options?: unknown }).options;
        if (typeof discriminator === 'string' && Array.isArray(options)) {
          const given = (iss.input as Record<string, unknown> | undefined)?.[discriminator];
          if (given === undefined) return `required, one of ${options.map(String).join(', ')}`;
          return `expected one of ${options.map(String).join(', ')}, got ${describeValue(given)}`;
        }
        return 'does not match any allowed form';
      }
      case 'invalid_key':
        // The key's own schema already said what is wrong with it (e.g. not a field path).
        return iss.issues[0]?.message ?? `invalid key ${describeValue(iss.input)}`;
      default:
        return undefined;
    }
  };

  function toIssues(issues: readonly z.core.$ZodIssue[]): ConfigIssue[] {
    const out: ConfigIssue[] = [];
    for (const issue of issues) {
      const path = toPath(issue.path);
      if (issue.code === 'unrecognized_keys') {
        const known = knownKeys.get(pathKey(path)) ?? [];
        for (const key of issue.keys) {
          const guess = closest(key, known);
          const message = guess ? `unknown key (did you mean "${guess}"?)` : 'unknown key';
          out.push({ path: [...path, key], message, code: 'METEORZX_CONFIG_INVALID' });
        }
      } else {
        out.push({ path, message: issue.message, code: 'METEORZX_CONFIG_INVALID' });
      }
    }
    return out;
  }

  return { errorMap, toIssues };
}

function boundMessage(word: string, strictWord: string, origin: string, bound: unknown, inclusive: boolean | undefined): string {
  const n = Number(bound);
  if (origin === 'string') return n === 1 && word === 'at least' ? 'must not be empty' : `must be ${word} ${n} characters long`;
  if (origin === 'array' || origin === 'set') return `must have ${word} ${n} ${n === 1 ? 'item' : 'items'}`;
  return inclusive === false ? `must be ${strictWord} ${String(bound)}` : `must be ${word} ${String(bound)}`;
}

export function toPath(path: readonly PropertyKey[] | undefined): ConfigPath {
  return (path ?? []).map((key) => (typeof key === 'number' ? key : String(key)));
}

export function pathKey(path: ConfigPath): string {
  return JSON.stringify(path);
}

/** The accepted key nearest to a mistyped one, if it is near enough to be the one meant. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(key.length / 3)) + 1;
  for (const candidate of known) {
    const d = candidate.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
