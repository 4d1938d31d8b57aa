import type { CustodyRecord } from '../../../protocols/index.js';
import type { VerifyProblem } from '../types.js';
import { CommitSet } from './commit-set.js';
import { KeyTally } from './key-tally.js';
import { custodyIdKey, custodySourceKey, idKey, pointerOf } from './keys.js';
import type { LevelDb } from './level-storage.js';
import { acceptedAt, type SnapshotCustody } from './snapshot-custody.js';
import { KeyScan, type Finding, type Prefix } from './verify-key-scan.js';

type Report = (p: VerifyProblem) => void;

/** Keys read at a time (see `commit`). */
const READ_KEYS = 4096;

/** Accepted records held until a later commit answers for their missing `id!` pointer (see `awaiting`); past this many, each is named at once. */
const MAX_AWAITING = 10_000;

/** The receive time of a record as a pointer writes it (level-commit.ts); the records of one caller share theirs. */
function receivedText(): (at: string) => string {
  let last = '';
  let text = '';
  return (at) => {
    if (at !== last) {
      last = at;
      text = Date.parse(at).toString(36);
    }
    return text;
  };
}

/** One commit's records, and where its keys are among those `flush` reads (from `has` on, from `values` on). */
interface CommitCheck {
  commit: number;
  records: readonly CustodyRecord[];
  /** The first record of each source. */
  sources: CustodyRecord[];
  /** `ci!` keys, and whether one must be there: a duplicate's or a rejection's must; an accepted record's in a retained commit may. */
  wanted: Map<string, { record: CustodyRecord; required: boolean }>;
  /** Accepted records whose pointer must be there, with the pointer's text when it points at them. */
  pointed: Array<{ record: CustodyRecord & { id: string }; index: number; key: string; expected: string }>;
  has: number;
  values: number;
}

type Owed = { record: CustodyRecord & { id: string }; index: number; later?: number };

/**
 * `read(keys)` with the keys in byte order, the answers in the given order: neighbouring keys (an agent's
 * ULIDs, one source's commits) share LevelDB's blocks.
 */
async function inKeyOrder<T>(keys: readonly string[], read: (sorted: string[]) => Promise<T[]>): Promise<T[]> {
  const order = keys.map((_, i) => i).sort((a, b) => ((keys[a] as string) < (keys[b] as string) ? -1 : (keys[a] as string) > (keys[b] as string) ? 1 : 0));
  const answers = await read(order.map((i) => keys[i] as string));
  const out = new Array<T>(keys.length);
  order.forEach((i, at) => (out[i] = answers[at] as T));
  return out;
}

/**
 * Checks the keys that lead from an id or a source to the ledger and to
 * stored events (keys.ts): the dedup index `id!<id>`, and the custody
 * indexes `ci!<id>!<commit>` and `cs!<source>!<commit>`. Forward, while
 * the ledger is walked (`commit`): every key the ledger's records call for
 * is read, in batches, in the walk's snapshot. Backward, once it is done
 * (`finish`): a scan of each kind finds the keys the ledger does not call
 * for — forged, or pointing at the wrong commit or event — against what
 * the walk counted (KeyScan, KeyTally), so that memory does not grow with
 * the store.
 *
 * What retention deletes with an event block (level-retention.ts) is not
 * asked for: the `id!` pointers into the block. Custody blocks stay, and so
 * do their `ci!` and `cs!` keys.
 */
export class IndexKeyAudit {
  /** Commits whose custody block the walk read (up to the head). */
  private readonly ledger = new CommitSet();
  /** Commits whose custody block cannot be decoded: keys pointing there are not judged (the walk names the block). */
  private readonly unreadable = new CommitSet();
  private readonly tally: Record<Prefix, KeyTally> = { 'id!': new KeyTally(), 'ci!': new KeyTally(), 'cs!': new KeyTally() };
  /**
   * Accepted records whose `id!` pointer is missing while their `ci!` key
   * says that a later commit accepted the id again, and took the pointer:
   * that commit's own check answers for it. Named at the end if no later
   * commit accepted the id (the `ci!` key was forged to hide the deletion).
   */
  private readonly awaiting = new Map<string, { n: number; source: string | undefined; commit: number; index: number }>();

  /** `ci!` keys of earlier copies that a pointer led back to (see `judge`), accounted for once each. */
  private readonly ledBack = new Set<string>();
  /** Commits queued for `flush`, and the keys to read for them: whether each is there, and the `id!` pointers. */
  private checks: CommitCheck[] = [];
  private existing: string[] = [];
  private pointers: string[] = [];
  /** The batch being read and judged, and what it found. */
  private reading: Promise<VerifyProblem[]> = Promise.resolve([]);

  /** `backed`: the commits whose event block the ledger accepts, filled by the walk as it goes. */
  constructor(
    private readonly db: LevelDb,
    private readonly snapshot: ReturnType<LevelDb['snapshot']>,
    private readonly custody: SnapshotCustody,
    private readonly backed: CommitSet,
    private readonly source: string | undefined,
  ) {}

  unreadableBlock(commit: number): void {
    this.unreadable.add(commit);
  }

  /**
   * The keys one commit's custody records call for; `eventsStored` is false when its event block is gone
   * (retention). They are read with those of the commits after it, a few thousand keys at a time: a read
   * costs a trip to LevelDB's thread pool, which a commit of a few events would pay for each.
   */
  async commit(commit: number, records: readonly CustodyRecord[], eventsStored: boolean, report: Report): Promise<void> {
    this.ledger.add(commit);
    const check: CommitCheck = { commit, records, sources: [], wanted: new Map(), pointed: [], has: this.existing.length, values: this.pointers.length };
    let accepted = 0;
    const commitText = `${commit.toString(36)},`;
    const received = receivedText();
    const sources = new Set<string>();
    for (const r of records) {
      if (r.source !== undefined && !sources.has(r.source)) {
        sources.add(r.source);
        check.sources.push(r);
      }
      if (r.outcome === 'accepted') {
        const index = accepted++;
        if (r.id === undefined) continue;
        if (eventsStored) {
          const expected = `${commitText}${index.toString(36)},${received(r.at)}`;
          check.pointed.push({ record: r as CustodyRecord & { id: string }, index, key: idKey(r.id), expected });
        } else {
          // Retention deleted the pointer with the event; a later accept of the id that replaced the pointer first left this key.
          const key = custodyIdKey(r.id, commit);
          if (!check.wanted.has(key)) check.wanted.set(key, { record: r, required: false });
        }
      } else if (r.id !== undefined) {
        const key = custodyIdKey(r.id, commit);
        if (check.wanted.get(key)?.required !== true) check.wanted.set(key, { record: r, required: true });
      }
    }
    for (const r of check.sources) this.existing.push(custodySourceKey(r.source as string, commit));
    for (const key of check.wanted.keys()) this.existing.push(key);
    for (const p of check.pointed) this.pointers.push(p.key);
    this.checks.push(check);
    if (this.existing.length + this.pointers.length >= READ_KEYS) await this.flush(report);
  }

  /**
   * Starts reading the keys of the commits queued by `commit`, which are then judged in ledger order,
   * while the walk goes on; first waits for the batch before, and reports its problems (here, so that
   * they come in the same place of the report every time).
   */
  private async flush(report: Report): Promise<void> {
    const before = await this.reading;
    const { checks, existing, pointers } = this;
    this.checks = [];
    this.existing = [];
    this.pointers = [];
    this.reading = this.judged(checks, existing, pointers);
    this.reading.catch(() => undefined); // awaited at the next flush; not unhandled meanwhile
    before.forEach(report);
  }

  private async judged(checks: readonly CommitCheck[], existing: readonly string[], pointers: readonly string[]): Promise<VerifyProblem[]> {
    const [has, values] = await Promise.all([
      existing.length === 0 ? [] : inKeyOrder(existing, (keys) => this.db.hasMany(keys, { snapshot: this.snapshot })),
      pointers.length === 0 ? [] : inKeyOrder(pointers, (keys) => this.db.getMany<string, string>(keys, { snapshot: this.snapshot, valueEncoding: 'utf8' })),
    ]);
    const found: VerifyProblem[] = [];
    for (const check of checks) await this.judge(check, has, values, (p) => found.push(p));
    return found;
  }

  private async judge(check: CommitCheck, has: readonly boolean[], values: readonly (string | undefined)[], report: Report): Promise<void> {
    const { commit, records, sources, wanted, pointed } = check;
    if (this.awaiting.size > 0) for (const r of records) if (r.outcome === 'accepted' && r.id !== undefined) this.awaiting.delete(r.id);
    let at = check.has;
    for (const record of sources) {
      const key = custodySourceKey(record.source as string, commit);
      if (has[at++] === true) this.tally['cs!'].expected(key);
      else await this.flag(report, key, { detail: `missing, yet ledger record ${record.n} (commit ${commit}) is of this source: custody by source misses the commit`, source: record.source });
    }
    const present = new Map<string, boolean>();
    for (const [key, { record, required }] of wanted) {
      const found = has[at++] === true;
      present.set(key, found);
      if (found) this.tally['ci!'].expected(key);
      else if (required) await this.flag(report, key, { detail: `missing, yet ledger record ${record.n} (commit ${commit}, ${record.outcome}) is of this id: custody by id misses it`, source: record.source });
    }

    /** Accepted records whose `ci!` key decides: their pointer is missing, or names the later commit that accepted the id again. */
    const owed: Owed[] = [];
    for (let i = 0; i < pointed.length; i += 1) {
      const { record, index, key, expected } = pointed[i] as (typeof pointed)[number];
      const value = values[check.values + i];
      if (value === expected) {
        this.tally['id!'].expected(key);
        continue;
      }
      if (value === undefined) {
        owed.push({ record, index });
        continue;
      }
      const p = pointerOf(value);
      if (p === undefined) continue; // the key scan names the value
      if (p.commit === commit && p.index === index) {
        // Not the text expected, so the receive time differs. The pipeline writes both from one reading of the
        // clock (run-stages.ts: ingest.receivedAt is the record's `at`).
        this.tally['id!'].expected(key);
        if (!Number.isNaN(Date.parse(record.at))) {
          const said = new Date(p.receivedMs).toISOString();
          await this.flag(report, key, { detail: `says the event was received at ${said}, ledger record ${record.n} says ${record.at}: dedup measures its window from the wrong time`, source: record.source });
        }
        continue;
      }
      const theirs = p.commit === commit ? records : ((await this.custody.records(p.commit)) ?? []);
      if (acceptedAt(theirs, p.index)?.id !== record.id) continue; // points at another event: the key scan names it
      if (p.commit > commit) owed.push({ record, index, later: p.commit });
      else if (p.commit < commit || p.index < index) {
        const detail = `points at an earlier copy (commit ${p.commit}, index ${p.index}), not at the one ledger record ${record.n} accepted after it (commit ${commit}, index ${index})`;
        await this.flag(report, key, { detail, source: record.source });
        if (p.commit < commit) await this.ledBackTo(p.commit, theirs, record.id);
      }
      // Else a later copy in this same commit holds the pointer, and its own check accounts for it.
    }
    if (owed.length > 0) {
      // A duplicate's or a rejection's key says nothing of a later accept.
      const own = new Set([...wanted].filter(([, w]) => w.required).map(([key]) => key));
      await this.settle(commit, owed, present, own, report);
    }
  }

  /** The `ci!` keys of accepted records whose id a later commit may have accepted again (see `judge`). */
  private async settle(commit: number, owed: readonly Owed[], present: Map<string, boolean>, own: ReadonlySet<string>, report: Report): Promise<void> {
    const keys = owed.map((o) => custodyIdKey(o.record.id, commit));
    const unread = [...new Set(keys.filter((k) => !present.has(k)))];
    const has = unread.length === 0 ? [] : await this.db.hasMany(unread, { snapshot: this.snapshot });
    unread.forEach((key, i) => {
      present.set(key, has[i] === true);
      if (has[i] === true) this.tally['ci!'].expected(key);
    });
    for (let i = 0; i < owed.length; i += 1) {
      const { record, index, later } = owed[i] as Owed;
      const key = keys[i] as string;
      const found = present.get(key) === true;
      if (later !== undefined) {
        if (!found) {
          const detail = `missing, yet ledger record ${record.n} (commit ${commit}) accepted this id before commit ${later} accepted it again: custody by id misses the first`;
          await this.flag(report, key, { detail, source: record.source });
        }
      } else if (found && !own.has(key) && this.awaiting.size < MAX_AWAITING) {
        this.awaiting.set(record.id, { n: record.n, source: record.source, commit, index });
      } else {
        await this.flag(report, idKey(record.id), { detail: missingPointer(record.n, commit, index), source: record.source });
      }
    }
  }

  /**
   * A pointer led back from `id`'s later copy to an earlier one, in `commit`: the earlier copy's own check
   * took the pointer for its own and read no `ci!` key, but the later copy's accept wrote one for it.
   * Counted here, so that the key scan does not name it too: once, and only where the earlier commit did
   * not count it already (for a duplicate there, or with its events retained).
   */
  private async ledBackTo(commit: number, records: readonly CustodyRecord[], id: string): Promise<void> {
    const key = custodyIdKey(id, commit);
    if (!this.backed.has(commit) || records.some((r) => r.id === id && r.outcome !== 'accepted')) return;
    if (this.ledBack.has(key) || this.ledBack.size >= MAX_AWAITING) return;
    this.ledBack.add(key);
    if (await this.db.has(key, { snapshot: this.snapshot })) this.tally['ci!'].expected(key);
  }

  /** After the walk: the commits still queued, the pointers no later accept answered for, then the scan of each kind of key. */
  async finish(report: Report): Promise<void> {
    await this.flush(report);
    (await this.reading).forEach(report);
    for (const [id, a] of this.awaiting) {
      const detail = `${missingPointer(a.n, a.commit, a.index)}; its ci! key says a later commit accepted the id again, but none did`;
      await this.flag(report, idKey(id), { detail, source: a.source });
    }
    this.awaiting.clear();
    const commits = { ledger: this.ledger, unreadable: this.unreadable, backed: this.backed };
    const keys = new KeyScan(this.db, this.snapshot, this.custody, commits, (key, f) => this.flag(report, key, f));
    for (const prefix of ['id!', 'ci!', 'cs!'] as const) await keys.scan(prefix, this.tally[prefix]);
  }

  private async flag(report: Report, key: string, f: Finding): Promise<void> {
    if (this.source !== undefined) {
      const source = f.about === undefined ? f.source : await this.sourceOf(f.about.commit, f.about.id);
      if (source !== undefined && source !== this.source) return;
    }
    report(problem(key, f.detail));
  }

  private async sourceOf(commit: number, id: string): Promise<string | undefined> {
    return (await this.custody.records(commit))?.find((r) => r.id === id)?.source;
  }
}

function problem(key: string, detail: string): VerifyProblem {
  return { kind: 'event', where: `index ${key}`, detail };
}

function missingPointer(n: number, commit: number, index: number): string {
  return `missing, yet ledger record ${n} accepted this event (commit ${commit}, index ${index}): dedup would store a repeat of it, and custody by id misses the record`;
}
