import type { CustodyRecord, SourceStatus } from '../../../protocols/index.js';
import type { VerifyProblem } from '../types.js';
import { parseCommitHex } from './keys.js';
import type { LevelDb } from './level-storage.js';
import type { SnapshotCustody } from './snapshot-custody.js';

/** Buckets of the per-source tally: three counters each, ≈400 KB whatever the number of sources. */
const BUCKETS = 1 << 14;
const OUTCOMES = ['accepted', 'duplicate', 'rejected'] as const;

type Report = (p: VerifyProblem) => void;
type Snapshot = ReturnType<LevelDb['snapshot']>;

/**
 * Checks the registry against the ledger (DESIGN §4; http-api.md, GET
 * /v1/sources: the per-source counts are a tally of the custody ledger).
 * Every `rs!<source>` and `ra!<agent>!<epoch>` key must decode — the
 * gateway reads them on every commit that names that source or epoch, and
 * a damaged one fails all of them — and the counts of every `rs!` key must
 * be those of the ledger's records of that source up to the head's
 * `sourcesAt` (the checkpoint they were written at; later commits are
 * counted again at open). As for the index keys (KeyTally), without a set
 * of sources: the walk adds each record to a bucket chosen by its source,
 * the scan of the `rs!` keys takes each key's counts off again, and only
 * the sources of a bucket left unbalanced are counted exactly, through
 * their `cs!` keys.
 */
export class RegistryAudit {
  private readonly sums = new Float64Array(BUCKETS * OUTCOMES.length);
  /** A custody block the walk could not read: its records cannot be counted (the walk names the block). */
  private blind = false;

  constructor(
    private readonly db: LevelDb,
    private readonly snapshot: Snapshot,
    private readonly custody: SnapshotCustody,
    /** The commit the `rs!` keys are current as of. */
    private readonly sourcesAt: number,
    private readonly source: string | undefined,
  ) {}

  /** The records of one commit, in ledger order. */
  commit(commit: number, records: readonly CustodyRecord[]): void {
    if (commit > this.sourcesAt) return;
    for (const r of records) {
      const k = OUTCOMES.indexOf(r.outcome as (typeof OUTCOMES)[number]);
      if (typeof r.source !== 'string' || k < 0) continue;
      const i = bucketOf(r.source) * OUTCOMES.length + k;
      this.sums[i] = (this.sums[i] as number) + 1;
    }
  }

  unreadableBlock(): void {
    this.blind = true;
  }

  async finish(report: Report): Promise<void> {
    const mine = (name: string): boolean => this.source === undefined || name === this.source;
    for await (const [key, value] of this.db.iterator({ gt: 'rs!', lt: 'rs"', snapshot: this.snapshot })) {
      const name = key.slice(3);
      const status = sourceStatus(value, name);
      if (status === undefined) {
        if (mine(name)) report({ kind: 'registry', where: key, detail: `holds ${JSON.stringify(value.toString('latin1').slice(0, 40))}, not a source's counts` });
        continue;
      }
      const b = bucketOf(name) * OUTCOMES.length;
      this.sums[b] = (this.sums[b] as number) - status.accepted;
      this.sums[b + 1] = (this.sums[b + 1] as number) - status.duplicates;
      this.sums[b + 2] = (this.sums[b + 2] as number) - status.rejected;
    }
    for await (const [key, value] of this.db.iterator({ gt: 'ra!', lt: 'ra"', snapshot: this.snapshot })) {
      if (!epochState(value) && mine(key.slice(3, key.indexOf('!', 3)))) {
        report({ kind: 'registry', where: key, detail: `holds ${JSON.stringify(value.toString('latin1').slice(0, 40))}, not an epoch's state` });
      }
    }
    // Balanced (the usual case): every count agrees, nothing more to read.
    if (this.blind || this.sums.every((n) => n === 0)) return;
    const unbalanced = (name: string): boolean => {
      const b = bucketOf(name) * OUTCOMES.length;
      return this.sums[b] !== 0 || this.sums[b + 1] !== 0 || this.sums[b + 2] !== 0;
    };
    // The sources of the unbalanced buckets: those with a key, and those the ledger names (their `cs!` keys).
    const suspects = new Set<string>();
    for await (const key of this.db.keys({ gt: 'rs!', lt: 'rs"', snapshot: this.snapshot })) if (unbalanced(key.slice(3))) suspects.add(key.slice(3));
    for await (const key of this.db.keys({ gt: 'cs!', lt: 'cs"', snapshot: this.snapshot })) {
      const name = key.slice(3, -17);
      if (unbalanced(name) && parseCommitHex(key.slice(-16)) <= this.sourcesAt) suspects.add(name);
    }
    for (const name of [...suspects].sort()) {
      if (!mine(name)) continue;
      const raw = (await this.db.get(`rs!${name}`, { snapshot: this.snapshot })) as Buffer | undefined;
      const status = raw === undefined ? undefined : sourceStatus(raw, name);
      if (raw !== undefined && status === undefined) continue; // named above
      const counted = await this.count(name);
      const has = status === undefined ? [0, 0, 0] : [status.accepted, status.duplicates, status.rejected];
      if (has.every((n, k) => n === counted[k])) continue;
      const detail =
        status === undefined
          ? `missing, yet the ledger holds ${counts(counted)} of this source`
          : `counts ${counts(has)}, the ledger ${counts(counted)} (up to commit ${this.sourcesAt})`;
      report({ kind: 'registry', where: `rs!${name}`, detail });
    }
  }

  /** The ledger's records of one source up to `sourcesAt`, by outcome, through its `cs!` keys. */
  private async count(name: string): Promise<number[]> {
    const out = [0, 0, 0];
    const prefix = `cs!${name}!`;
    for await (const key of this.db.keys({ gt: prefix, lt: `${prefix}~`, snapshot: this.snapshot })) {
      if (key.length !== prefix.length + 16) continue;
      const commit = parseCommitHex(key.slice(-16));
      if (commit > this.sourcesAt) break;
      for (const r of (await this.custody.records(commit)) ?? []) {
        const k = OUTCOMES.indexOf(r.outcome as (typeof OUTCOMES)[number]);
        if (r.source === name && k >= 0) out[k] = (out[k] as number) + 1;
      }
    }
    return out;
  }
}

function counts([a, d, r]: readonly number[]): string {
  return `${a} accepted, ${d} duplicate, ${r} rejected`;
}

function parse(value: Buffer): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(value.toString()) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

function sourceStatus(value: Buffer, name: string): SourceStatus | undefined {
  const v = parse(value);
  if (v === undefined || v.source !== name || typeof v.lastSeen !== 'string') return undefined;
  if (!count(v.accepted) || !count(v.duplicates) || !count(v.rejected)) return undefined;
  return v as unknown as SourceStatus;
}

function epochState(value: Buffer): boolean {
  const v = parse(value);
  return v !== undefined && typeof v.agent === 'string' && typeof v.epoch === 'string' && count(v.lastSeq) && count(v.received) && Array.isArray(v.gaps);
}

/** FNV-1a over the UTF-16 code units (as KeyTally). */
function bucketOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i += 1) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) & (BUCKETS - 1);
}
