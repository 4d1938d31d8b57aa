import type { CustodyRecord } from '../../../protocols/index.js';
import type { VerifyProblem } from '../types.js';
import { CommitSet } from './commit-set.js';
import { KeyTally } from './key-tally.js';
import { custodyIdKey, custodySourceKey, decodePointer, encodePointer, idKey, parseCommitHex, type IdPointer } from './keys.js';
import type { LevelDb } from './level-storage.js';
import { acceptedAt, type SnapshotCustody } from './snapshot-custody.js';

type Report = (p: VerifyProblem) => void;
type Prefix = 'id!' | 'ci!' | 'cs!';

/** Keys read at a time (see `commit`). */
const READ_KEYS = 4096;

/** Accepted records held until a later commit answers for their missing `id!` pointer (see `awaiting`); past this many, each is named at once. */
const MAX_AWAITING = 10_000;

/** A problem with one key; under `verify --source` it is named when it concerns that source or nothing tells which one it concerns. */
interface Finding {
  detail: string;
  source?: string | undefined;
  /** The source is that of the record of `id` in `commit`, if there is one (looked up only under --source). */
  about?: { commit: number; id: string };
}

/** A dedup pointer exactly as the store writes one: anything else in an `id!` value is not one. */
function pointerOf(text: string): IdPointer | undefined {
  const p = decodePointer(text);
  return p !== undefined && encodePointer(p) === text ? p : undefined;
}

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
 * is read, in batches, in the walk's snapshot. Backward, once
 * it is done (`finish`): a scan of each kind finds the keys the ledger does
 * not call for — forged, or pointing at the wrong commit or event — with
 * a KeyTally, so that memory does not grow with the store.
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
    for (const prefix of ['id!', 'ci!', 'cs!'] as const) await this.scan(prefix, report);
  }

  /**
   * Every key of one kind: a key that points nowhere is named at once; the
   * others are counted against the walk's tally, and only when some are
   * unaccounted for is the kind scanned again, looking closer (a read of
   * the custody block) at the keys of the buckets that hold them.
   */
  private async scan(prefix: Prefix, report: Report): Promise<void> {
    const tally = this.tally[prefix];
    await this.each(prefix, (key, value) => {
      const verdict = this.locate(prefix, key, value);
      if (verdict === 'counted') tally.stored(key);
      else if (verdict !== 'skip') return this.flag(report, key, verdict);
      return undefined;
    });
    if (!tally.unaccounted()) return;
    await this.each(prefix, async (key, value) => {
      if (!tally.suspect(key) || this.locate(prefix, key, value) !== 'counted') return;
      const finding = prefix === 'id!' ? await this.pointerTarget(key, value) : await this.custodyTarget(prefix, key);
      if (finding !== undefined) await this.flag(report, key, finding);
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
      if (this.backed.has(Number.parseInt(value, 36))) return 'counted';
      const p = pointerOf(value);
      if (p === undefined) return { detail: notPointer(value) };
      if (this.unreadable.has(p.commit)) return 'skip';
      return { detail: `points at commit ${p.commit}, which holds no event block the ledger accepted`, about: { commit: p.commit, id: key.slice(3) } };
    }
    const m = /^c[is]!(.+)!([0-9a-f]{16})$/s.exec(key);
    if (m === null) return { detail: 'index key names no commit' };
    const commit = parseCommitHex(m[2] as string);
    if (this.unreadable.has(commit)) return 'skip';
    if (this.ledger.has(commit)) return 'counted';
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
    if (mine.some((r) => r.outcome !== 'accepted') || !this.backed.has(commit)) return undefined;
    // An accepted record's key is written by the commit that accepted the id again and took its pointer.
    const value = await this.db.get<string, string>(idKey(name), { snapshot: this.snapshot, valueEncoding: 'utf8' });
    const p = value === undefined ? undefined : pointerOf(value);
    if (p === undefined || p.commit > commit) return undefined; // missing: a later accept answers for it (see `awaiting`); unreadable: named as such
    return { detail: `points at commit ${commit}, whose ledger record ${first.n} accepted this id, and no later commit accepted it again`, source: first.source };
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

function notPointer(value: string): string {
  return `holds ${JSON.stringify(value.slice(0, 40))}, not a dedup pointer`;
}

function missingPointer(n: number, commit: number, index: number): string {
  return `missing, yet ledger record ${n} accepted this event (commit ${commit}, index ${index}): dedup would store a repeat of it, and custody by id misses the record`;
}
