import type { CustodyRecord } from '../../../protocols/index.js';

/**
 * What makes a deleted event block legitimate (DESIGN §4: verify proves
 * that no stored event was lost): a `retained` record in the hash-chained
 * custody ledger. Retention writes one with every batch of blocks it
 * deletes, in the same synced write, naming the commits (`from` … `to`)
 * and the receive time before which it deleted (`before`); the `r!` marker
 * of each deleted block names the commit holding that record. The marker is
 * only a pointer, covered by no hash: what proves the deletion is the record
 * it points at, and the receive times in the deleted commit's own records.
 */

/** True when `commit` accepted events, and every one of them was received before `horizon` (ms). */
export function acceptedBefore(records: readonly CustodyRecord[], horizon: number): boolean {
  let any = false;
  for (const r of records) {
    if (r.outcome !== 'accepted') continue;
    any = true;
    if (!(Date.parse(r.at) < horizon)) return false;
  }
  return any;
}

/** The `retained` record among `records` that covers `commit`, if any. */
function retentionRecordFor(records: readonly CustodyRecord[], commit: number): CustodyRecord | undefined {
  return records.find(
    (r) => r.outcome === 'retained' && typeof r.from === 'number' && typeof r.to === 'number' && r.from <= commit && commit <= r.to,
  );
}

/**
 * Why the block of `commit`, whose records are `records`, may be missing —
 * undefined when `retention` (the records of the commit its `r!` marker
 * names) proves it was deleted by retention, else the reason it is not.
 */
export function unprovenRetention(
  commit: number,
  records: readonly CustodyRecord[],
  marker: { commit: number; records: readonly CustodyRecord[] | undefined } | undefined,
  headCommit: number,
): string | undefined {
  if (marker === undefined) return 'stored event is missing';
  if (marker.records === undefined || marker.commit <= commit || marker.commit > headCommit) {
    return 'stored event is missing; its retention marker names no retention record in the ledger';
  }
  const record = retentionRecordFor(marker.records, commit);
  if (record === undefined) return 'stored event is missing; its retention marker names no retention record in the ledger';
  const horizon = record.before === undefined ? Number.NaN : Date.parse(record.before);
  if (!acceptedBefore(records, horizon)) {
    return `stored event is missing; retention (ledger record ${record.n}) deleted only events received before ${record.before ?? '?'}`;
  }
  return undefined;
}
