import { canonicalJson } from './canonical.js';
import { isWellFormed } from './unicode.js';

/**
 * RFC 8785 canonical JSON for the hot paths (the agent's append, the
 * gateway's commit), where every event is serialised once. RFC 8785 writes strings and numbers exactly as
 * JSON.stringify does; what it adds is key order (UTF-16 code units, what
 * `Array.prototype.sort` gives). So this copies the value with its keys
 * inserted in sorted order and lets the native JSON.stringify write it —
 * about twice as fast as the generic `canonicalJson`. Anything JSON.stringify
 * would order or write differently — integer-like keys (objects list them
 * first, numerically), `__proto__`, lone surrogates, non-finite numbers,
 * toJSON, non-JSON types, extreme depth — goes to `canonicalJson`, which serialises
 * it or throws its typed error, so both always agree.
 */
export function fastCanonicalJson(value: unknown): string {
  const sorted = sortedCopy(value, 0);
  return sorted === UNUSUAL ? canonicalJson(value) : JSON.stringify(sorted);
}

/**
 * `fastCanonicalJson` of an object without one of its top-level keys (an
 * event without its `hash`), with no copy of the object made to drop it.
 */
export function fastCanonicalJsonWithout(value: Record<string, unknown>, omit: string): string {
  const sorted = sortedCopy(value, 0, omit);
  if (sorted !== UNUSUAL) return JSON.stringify(sorted);
  const { [omit]: _omitted, ...rest } = value;
  return canonicalJson(rest);
}

const UNUSUAL = Symbol('unusual');
const MAX_DEPTH = 64;
const INTEGER_KEY = /^(?:0|[1-9][0-9]*)$/;


function sortedCopy(value: unknown, depth: number, omit?: string): unknown {
  switch (typeof value) {
    case 'string':
      return isWellFormed(value) ? value : UNUSUAL;
    case 'number':
      return Number.isFinite(value) ? value : UNUSUAL;
    case 'boolean':
      return value;
    case 'object':
      break;
    default:
      return UNUSUAL;
  }
  if (value === null) return null;
  if (depth > MAX_DEPTH) return UNUSUAL;
  if (Array.isArray(value)) {
    // Copied only from the first item that changes: an array of canonical items is reused as it is.
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i += 1) {
      const item: unknown = value[i];
      // Undefined in an array is written as null, as canonicalJson does.
      const copy = item === undefined ? null : sortedCopy(item, depth + 1);
      if (copy === UNUSUAL) return UNUSUAL;
      if (out === undefined && copy !== item) out = value.slice(0, i);
      if (out !== undefined) out[i] = copy;
    }
    return out ?? value;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return UNUSUAL;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  let inOrder = true;
  for (let i = 1; i < keys.length; i += 1) {
    if ((keys[i - 1] as string) > (keys[i] as string)) {
      inOrder = false;
      break;
    }
  }
  // An object whose keys are already in order, holding only canonical values, is written as it is: no
  // copy (the gateway builds its stored events that way). Otherwise a copy with the keys inserted in order.
  let out: Record<string, unknown> | undefined;
  if (!inOrder) {
    sortKeys(keys);
    out = {};
  }
  for (let i = 0; i < keys.length; i += 1) {
    const key = keys[i] as string;
    const first = key.charCodeAt(0);
    // Assigning "__proto__" would set the prototype, not a property (JSON.parse does make it a property).
    // The digit test first: the regex runs only for the rare key that starts with one.
    if ((first >= 48 && first <= 57 && INTEGER_KEY.test(key)) || key === '__proto__' || !isWellFormed(key)) return UNUSUAL;
    const item = obj[key];
    const skip = item === undefined || typeof item === 'symbol' || key === omit;
    const copy = skip ? undefined : sortedCopy(item, depth + 1);
    if (copy === UNUSUAL) return UNUSUAL;
    if (out === undefined && (skip || copy !== item)) {
      out = {};
      for (let j = 0; j < i; j += 1) out[keys[j] as string] = obj[keys[j] as string];
    }
    if (out !== undefined && !skip) out[key] = copy;
  }
  return out ?? obj;
}

/**
 * Sorts keys in UTF-16 code-unit order, as `Array.prototype.sort` does for
 * strings. An event's objects have a handful of keys, and for those an
 * insertion sort allocates nothing, where V8's TimSort sets up its state
 * and work arrays on every call: ≈ 0.7 KB per event in the agent's append
 * (allocation sampling, docs/performance.md), a tenth of all it allocates.
 */
function sortKeys(keys: string[]): void {
  if (keys.length > 16) {
    keys.sort();
    return;
  }
  for (let i = 1; i < keys.length; i += 1) {
    const key = keys[i] as string;
    let j = i - 1;
    while (j >= 0 && (keys[j] as string) > key) {
      keys[j + 1] = keys[j] as string;
      j -= 1;
    }
    keys[j + 1] = key;
  }
}
