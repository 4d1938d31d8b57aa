import { canonicalJson, isWellFormed, type CustodyRecord } from '../../protocols/index.js';

/**
 * RFC 8785 canonical JSON of a custody record, built directly: the record's
 * shape is fixed, so a copy with its keys inserted in canonical order,
 * written by the native JSON.stringify, is already canonical (RFC 8785
 * writes strings and integers as JSON.stringify does). The ledger does this
 * for every event on the commit's hot path. Anything unusual (an unknown
 * field, a lone surrogate, a non-integer) goes to the generic
 * `canonicalJson`, so both always agree or both throw.
 */
const KEYS = ['at', 'before', 'eventHash', 'from', 'hash', 'id', 'method', 'n', 'outcome', 'peer', 'prev', 'reason', 'source', 'to'] as const;
const KNOWN: ReadonlySet<string> = new Set(KEYS);


export function custodyJson(record: Partial<CustodyRecord>, omitHash = false): string {
  const r = record as Record<string, unknown>;
  const ordered: Record<string, unknown> = {};
  for (const key of KEYS) {
    const value = r[key];
    if (value === undefined || (omitHash && key === 'hash')) continue;
    if (typeof value === 'string' ? !isWellFormed(value) : !(typeof value === 'number' && Number.isSafeInteger(value))) {
      return canonicalJson(omitHash ? withoutHash(r) : record);
    }
    ordered[key] = value;
  }
  for (const key in r) {
    if (!KNOWN.has(key) && r[key] !== undefined) return canonicalJson(omitHash ? withoutHash(r) : record);
  }
  return JSON.stringify(ordered);
}

function withoutHash(r: Record<string, unknown>): Record<string, unknown> {
  const { hash: _omit, ...rest } = r;
  return rest;
}
