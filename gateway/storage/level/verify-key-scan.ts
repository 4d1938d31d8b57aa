import type { CommitSet } from './commit-set.js';
import type { KeyTally } from './key-tally.js';
import { idKey, notPointer, parseCommitHex, pointerOf } from './keys.js';
import type { LevelDb } from './level-storage.js';
import { acceptedAt, type SnapshotCustody } from './snapshot-custody.js';

export type Prefix = 'id!' | 'ci!' | 'cs!';

/** A problem with one key; under `verify --source` it is named when it concerns that source or nothing tells which one it concerns. */
export interface Finding {
  detail: string;
  source?: string | undefined;
  /** The source is that of the record of `id` in `commit`, if there is one (looked up only under --source). */
  about?: { commit: number; id: string };
}

/**
 * The backward half of the key checks (verify-keys.ts): once the ledger is
 * walked, every stored key of one kind must be one the walk counted where
 * the ledger calls for it. A key that points at no commit it could belong
 * to is named at once, without a read; the others are counted down against
 * the walk's KeyTally, and only when some are unaccounted for is the kind
 * scanned again, looking closer (a read of the custody block it points at)
 * at the keys of the buckets that hold them.
 */
export class KeyScan {
  /**
   * `commits`: those of the ledger (read up to its head), those whose custody block cannot be decoded (keys
   * pointing there are not judged), and those whose event block the ledger accepts. `flag` names a problem.
   */
  constructor(
    private readonly db: LevelDb,
    private readonly snapshot: ReturnType<LevelDb['snapshot']>,
    private readonly custody: SnapshotCustody,
    private readonly commits: { ledger: CommitSet; unreadable: CommitSet; backed: CommitSet },
    private readonly flag: (key: string, f: Finding) => Promise<void>,
  ) {}

  /** Every key of one kind, against `tally`. */
  async scan(prefix: Prefix, tally: KeyTally): Promise<void> {
    await this.each(prefix, (key, value) => {
      const verdict = this.locate(prefix, key, value);
      if (verdict === 'counted') tally.stored(key);
      else if (verdict !== 'skip') return this.flag(key, verdict);
      return undefined;
    });
    if (!tally.unaccounted()) return;
    await this.each(prefix, async (key, value) => {
      if (!tally.suspect(key) || this.locate(prefix, key, value) !== 'counted') return;
      const finding = prefix === 'id!' ? await this.pointerTarget(key, value) : await this.custodyTarget(prefix, key);
      if (finding !== undefined) await this.flag(key, finding);
    });
  }

  /**
   * The keys of one kind, with their values as text (the `c?!` keys have none worth reading), a thousand
   * per read: a store holds one `id!` key per event, and a promise per key cost more than the check.
   */
  private async each(prefix: Prefix, fn: (key: string, value: string) => Promise<void> | undefined): Promise<void> {
    const range = { gt: prefix, lt: `${prefix.slice(0, -1)}"`, snapshot: this.snapshot };
    const it: { nextv(n: number): Promise<Array<string | [string, string]>>; close(): Promise<void> } =
      prefix === 'id!' ? this.db.iterator<string, string>({ ...range, valueEncoding: 'utf8' }) : this.db.keys(range);
    try {
      for (let batch = await it.nextv(1000); batch.length > 0; batch = await it.nextv(1000)) {
        for (const entry of batch) {
          const pending = typeof entry === 'string' ? fn(entry, '') : fn(entry[0], entry[1]);
          if (pending !== undefined) await pending; // awaiting nothing would still cost a turn per key
        }
      }
    } finally {
      await it.close();
    }
  }

  /** Where a key points, without reading: `counted` when that is somewhere the ledger could call for it. */
  private locate(prefix: Prefix, key: string, value: string): Finding | 'counted' | 'skip' {
    if (prefix === 'id!') {
      // The commit alone (its digits end at the comma): whether the rest is a pointer is looked at only if the counts call for it.
      if (this.commits.backed.has(Number.parseInt(value, 36))) return 'counted';
      const p = pointerOf(value);
      if (p === undefined) return { detail: notPointer(value) };
      if (this.commits.unreadable.has(p.commit)) return 'skip';
      return { detail: `points at commit ${p.commit}, which holds no event block the ledger accepted`, about: { commit: p.commit, id: key.slice(3) } };
    }
    const m = /^c[is]!(.+)!([0-9a-f]{16})$/s.exec(key);
    if (m === null) return { detail: 'index key names no commit' };
    const commit = parseCommitHex(m[2] as string);
    if (this.commits.unreadable.has(commit)) return 'skip';
    if (this.commits.ledger.has(commit)) return 'counted';
    const detail = `points at commit ${commit}, which has no custody block in the ledger`;
    return prefix === 'cs!' ? { detail, source: m[1] } : { detail };
  }

  /** An `id!` key that points at an event block the ledger accepts, but that the walk did not find there. */
  private async pointerTarget(key: string, value: string): Promise<Finding | undefined> {
    const p = pointerOf(value);
    if (p === undefined) return { detail: notPointer(value) };
    const records = await this.custody.records(p.commit);
    if (records === undefined) return undefined;
    const r = acceptedAt(records, p.index);
    if (r === undefined) {
      const count = records.filter((x) => x.outcome === 'accepted').length;
      return { detail: `points at index ${p.index} of commit ${p.commit}, whose ledger records accept ${count} events` };
    }
    if (r.id === key.slice(3)) return undefined;
    return { detail: `points at commit ${p.commit}, index ${p.index}, where ledger record ${r.n} accepted event ${r.id ?? '(no id)'}`, source: r.source };
  }

  /** A `ci!` or `cs!` key that points at a ledger commit, but that the walk did not find called for there. */
  private async custodyTarget(prefix: 'ci!' | 'cs!', key: string): Promise<Finding | undefined> {
    const m = /^c[is]!(.+)!([0-9a-f]{16})$/s.exec(key) as RegExpExecArray;
    const name = m[1] as string;
    const commit = parseCommitHex(m[2] as string);
    const records = await this.custody.records(commit);
    if (records === undefined) return undefined;
    if (prefix === 'cs!') {
      if (records.some((r) => r.source === name)) return undefined;
      return { detail: `points at commit ${commit}, whose custody records hold none of this source`, source: name };
    }
    const mine = records.filter((r) => r.id === name);
    const first = mine[0];
    if (first === undefined) return { detail: `points at commit ${commit}, whose custody records hold none of this id` };
    if (mine.some((r) => r.outcome !== 'accepted') || !this.commits.backed.has(commit)) return undefined;
    // An accepted record's key is written by the commit that accepted the id again and took its pointer.
    const value = await this.db.get<string, string>(idKey(name), { snapshot: this.snapshot, valueEncoding: 'utf8' });
    const p = value === undefined ? undefined : pointerOf(value);
    if (p === undefined || p.commit > commit) return undefined; // missing: a later accept answers for it (see `awaiting`); unreadable: named as such
    return { detail: `points at commit ${commit}, whose ledger record ${first.n} accepted this id, and no later commit accepted it again`, source: first.source };
  }
}
