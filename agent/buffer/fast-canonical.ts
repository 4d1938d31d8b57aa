import { canonicalJson } from '../../protocols/index.js';

/**
 * RFC 8785 canonical JSON for the append hot path. Same output as
 * protocols' `canonicalJson` (a property test holds them equal), about twice
 * as fast: no Set of seen objects, no intermediate arrays. Anything unusual
 * (non-finite numbers, lone surrogates, toJSON, non-JSON types) is handed to
 * `canonicalJson`, which either serialises it or throws its typed error —
 * so both paths agree on every input, including the failing ones.
 */
export function fastCanonicalJson(value: unknown): string {
  const out = write(value, 0);
  return out ?? canonicalJson(value);
}

// String.prototype.isWellFormed is in Node 20 (V8 11.3) but not in the ES2023 lib this project compiles against.
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

// Depth guard: a cycle or a hostile tree falls back to canonicalJson, which reports it.
const MAX_DEPTH = 128;

function write(value: unknown, depth: number): string | undefined {
  switch (typeof value) {
    case 'string':
      return isWellFormed(value) ? JSON.stringify(value) : undefined;
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : undefined;
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      break;
    default:
      return undefined;
  }
  if (value === null) return 'null';
  if (depth > MAX_DEPTH) return undefined;
  if (Array.isArray(value)) {
    let s = '[';
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const part = item === undefined || typeof item === 'symbol' ? 'null' : write(item, depth + 1);
      if (part === undefined) return undefined;
      s += i === 0 ? part : `,${part}`;
    }
    return `${s}]`;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return undefined;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  let s = '{';
  let first = true;
  for (const key of keys) {
    const item = obj[key];
    if (item === undefined || typeof item === 'symbol') continue;
    if (!isWellFormed(key)) return undefined;
    const part = write(item, depth + 1);
    if (part === undefined) return undefined;
    s += `${first ? '' : ','}${JSON.stringify(key)}:${part}`;
    first = false;
  }
  return `${s}}`;
}
