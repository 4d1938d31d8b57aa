import type { CustodyRecord } from '../../../protocols/index.js';
import { sha256Hex as sha256 } from '../../../protocols/index.js';
import { checkCustodyRecord, custodyHash, type LedgerHead } from '../ledger.js';
import type { LedgerAnchor, VerifyOptions, VerifyProblem, VerifyReport } from '../types.js';
import { decodeCustodyBlock, decodeEventBlock, decodeLines } from './block-codec.js';
import { CommitSet } from './commit-set.js';
import { HEAD_KEY, parseCommitHex } from './keys.js';
import { decodeHead, type LevelHead } from './level-commit.js';
import type { LevelDb } from './level-storage.js';
import { unprovenRetention } from './retention-proof.js';
import { SnapshotCustody } from './snapshot-custody.js';
import { ChainReplay } from './verify-chains.js';
import { IndexKeyAudit } from './verify-keys.js';
import { RegistryAudit } from './verify-registry.js';

/** Problems listed in a report; counting goes on past it. */
const MAX_PROBLEMS = 100;

type Report = (p: VerifyProblem) => void;
type Snapshot = ReturnType<LevelDb['snapshot']>;

/**
 * Walks the custody ledger in order, recomputing every record's hash and
 * its link to the one before, and checks each commit's stored events
 * against the `eventHash` its accepted records hold: any change to stored
 * data after ingest — an event, a record, a removed or added block — is
 * reported with its location. The event blocks are walked alongside (both
 * are ordered by commit), so a block the ledger does not account for is
 * found too, and then every index key queries follow (`d!`, `s!`, `y!`),
 * which must point at a block the ledger accepts. A block may be missing
 * only when a `retained` ledger record proves that retention deleted it
 * (retention-proof.ts). The keys that lead from an id or a source to the
 * ledger — dedup pointers, custody by id and by source — are checked both
 * ways (verify-keys.ts). Streaming: the memory held is a few bits per
 * commit and fixed-size tallies, whatever the number of events.
 */
export async function verifyLevel(db: LevelDb, opts: VerifyOptions): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  let found = 0;
  const report: Report = (p) => {
    found += 1;
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };
  // One snapshot for the whole walk: on a running gateway, commits and retention land meanwhile, and the
  // head, the ledger, the blocks, the markers and the indexes are only comparable as of one moment.
  const snapshot = db.snapshot();
  try {
    const rawHead = (await db.get(HEAD_KEY, { snapshot })) as Buffer | undefined;
    const stored = decodeHead(rawHead);
    const backed = new CommitSet();
    const custody = new SnapshotCustody(db, snapshot);
    const keys = new IndexKeyAudit(db, snapshot, custody, backed, opts.source);
    const registry = new RegistryAudit(db, snapshot, custody, stored.sourcesAt ?? stored.commit, opts.source);
    const walk = await walkLedger(db, snapshot, stored, opts, report, { backed, custody, keys, registry });
    await checkIndexes(db, snapshot, backed, opts.source, report);
    await keys.finish(report);
    await registry.finish(report);
    const end = walk.head?.hash === undefined ? {} : { ledgerHead: { n: walk.head.n, hash: walk.head.hash } };
    return { ok: found === 0, ledgerRecords: walk.ledgerRecords, events: walk.events, problems, problemCount: found, ...end };
  } finally {
    await snapshot.close();
  }
}

/**
 * The ledger (`k!`) and the event blocks (`b!`) in one ordered pass; fills `backed` with the commits whose
 * block the ledger accepts, and has `keys` read the index keys each commit calls for.
 */
async function walkLedger(
  db: LevelDb,
  snapshot: Snapshot,
  stored: LevelHead,
  opts: VerifyOptions,
  report: Report,
  { backed, custody, keys, registry }: { backed: CommitSet; custody: SnapshotCustody; keys: IndexKeyAudit; registry: RegistryAudit },
): Promise<{ ledgerRecords: number; events: number; head: LedgerHead | undefined }> {
  let head: LedgerHead | undefined = { n: 0, hash: undefined };
  const anchor = new AnchorCheck(opts.anchor);
  let ledgerRecords = 0;
  let events = 0;
  const blocks = new CommitCursor(db.iterator({ gt: 'b!', lt: 'b"', snapshot }));
  const markers = new CommitCursor(db.iterator({ gt: 'r!', lt: 'r"', snapshot }));
  const retention = new RetentionRecords(custody);
  const chains = new ChainReplay(opts.source);
  const orphan = async ({ commit, value }: { commit: number; value: Buffer }): Promise<void> => {
    if (!(await mayHold(commit, value, opts.source))) return;
    const detail = commit > stored.commit ? `event block past the ledger head (commit ${stored.commit})` : 'event block with no custody block';
    report({ kind: 'event', where: `block ${commit}`, detail });
  };
  try {
    for await (const [key, value] of db.iterator({ gt: 'k!', lt: 'k"', snapshot })) {
      const commit = parseCommitHex(key.slice(2));
      for (let b = await blocks.peek(); b !== undefined && b.commit < commit; b = await blocks.peek()) {
        blocks.take();
        await orphan(b);
      }
      if (commit > stored.commit) {
        // Read in the same snapshot as the head: a commit landing during the walk is not in it, so this was added.
        report({ kind: 'ledger', where: `block ${commit}`, detail: `custody block past the ledger head (commit ${stored.commit})` });
        continue;
      }
      const raw = (await blocks.peek())?.commit === commit ? blocks.take() : undefined;
      let records: CustodyRecord[];
      try {
        records = await decodeCustodyBlock(commit, value);
      } catch (err) {
        report({ kind: 'ledger', where: `after ${head?.n ?? '?'}`, detail: (err as Error).message });
        anchor.unreadable();
        keys.unreadableBlock(commit);
        registry.unreadableBlock();
        head = undefined; // the next readable record starts a new reference point
        continue;
      }
      for (const record of records) {
        ledgerRecords += 1;
        const problem =
          head === undefined
            ? custodyHash(record) === record.hash
              ? undefined
              : 'hash does not match content'
            : checkCustodyRecord(record, head);
        if (problem !== undefined) report({ kind: 'ledger', where: String(record.n), detail: problem });
        anchor.record(record, report);
        head = { n: record.n, hash: record.hash };
      }
      registry.commit(commit, records);
      const check: BlockCheck = { commit, records, raw, source: opts.source, report, chains };
      if (raw === undefined) {
        const marker = await markers.seek(commit);
        const proof = await retention.proof(marker);
        events += checkMissing(check, proof, stored.commit);
        await keys.commit(commit, records, false, report);
      } else {
        // A batch of key reads may start or end meanwhile (both on the thread pool); what it found follows the block's problems.
        const found: VerifyProblem[] = [];
        const [checked] = await Promise.all([verifyBlock(check), keys.commit(commit, records, true, (p) => found.push(p))]);
        events += checked;
        found.forEach(report);
        if (records.some((r) => r.outcome === 'accepted')) backed.add(commit);
      }
      opts.onProgress?.(ledgerRecords);
    }
    for (let b = await blocks.peek(); b !== undefined; b = await blocks.peek()) {
      blocks.take();
      await orphan(b);
    }
  } finally {
    await Promise.all([blocks.close(), markers.close()]);
  }
  if (head !== undefined && (stored.n !== head.n || stored.hash !== head.hash)) {
    // Same number, other hash: the last record was changed (and its own hash made to match), or the head was.
    const detail =
      stored.n === head.n
        ? `ledger ends at record ${head.n} with hash ${head.hash ?? '(none)'}, but its head (m!head) holds ${stored.hash ?? '(none)'}`
        : `ledger ends at record ${head.n} but its head says ${stored.n}`;
    report({ kind: 'ledger', where: String(head.n), detail });
  }
  anchor.finish(head, report);
  return { ledgerRecords, events, head };
}

/**
 * The anchor's record must be in the ledger with the anchor's hash. Its hash
 * covers every record before it, so this proves records 1…n unchanged; the
 * chain check alone passes a ledger whose end was cut off or rewritten
 * together with the head.
 */
class AnchorCheck {
  private seen = false;
  private gap = false;

  constructor(private readonly anchor: LedgerAnchor | undefined) {}

  record(record: CustodyRecord, report: Report): void {
    if (this.anchor === undefined || record.n !== this.anchor.n) return;
    this.seen = true;
    if (record.hash !== this.anchor.hash) {
      report({
        kind: 'ledger',
        where: String(record.n),
        detail: `record ${record.n} has hash ${record.hash}, not the anchor's ${this.anchor.hash}: the ledger was rewritten at or before it`,
      });
    }
  }

  /** A custody block that cannot be read: the anchor's record may be in it. */
  unreadable(): void {
    this.gap = true;
  }

  finish(head: LedgerHead | undefined, report: Report): void {
    if (this.anchor === undefined || this.seen) return;
    const { n } = this.anchor;
    const detail =
      this.gap || head === undefined || head.n >= n
        ? `the anchor's record ${n} was not found (a custody block could not be read)`
        : `the ledger ends at record ${head.n}, before the anchor's record ${n}: records were removed from its end (or the anchor is another gateway's)`;
    report({ kind: 'ledger', where: `anchor ${n}`, detail });
  }
}

interface BlockCheck {
  commit: number;
  records: readonly CustodyRecord[];
  /** The commit's event block, undefined when there is none. */
  raw: Buffer | undefined;
  source: string | undefined;
  report: Report;
  /** The agents' chains, replayed over each block's events in ledger order. */
  chains: ChainReplay;
}

const wantedBy = (source: string | undefined) => (r: CustodyRecord): boolean => source === undefined || r.source === source;
const where = (r: CustodyRecord): string => r.id ?? `ledger ${r.n}`;

/** A commit without an event block: fine when it accepted no event, or when retention proves the deletion. */
function checkMissing({ commit, records, source, report }: BlockCheck, marker: RetentionMarker | undefined, headCommit: number): number {
  const accepted = records.filter((r) => r.outcome === 'accepted');
  if (accepted.length === 0) return 0;
  const problem =
    marker?.records === null
      ? 'stored event is missing; its retention marker is from before retention was recorded in the ledger and proves nothing (a gateway adopts it at its next retention run if the event was due)'
      : unprovenRetention(commit, records, marker === undefined ? undefined : { commit: marker.commit, records: marker.records }, headCommit);
  if (problem === undefined) return 0;
  for (const r of accepted.filter(wantedBy(source))) report({ kind: 'event', where: where(r), detail: problem });
  return 0;
}

/**
 * Whether an event block the ledger does not account for concerns `verify --source`: the ledger names no
 * source for it, so its own events must. One that cannot be decoded is named whatever the source: it may
 * hold that source's events, and a per-source check must not pass over damage it cannot rule out.
 */
async function mayHold(commit: number, raw: Buffer, source: string | undefined): Promise<boolean> {
  if (source === undefined) return true;
  try {
    return (await decodeEventBlock(commit, raw)).events.some((e) => e.source === source);
  } catch {
    return true;
  }
}

/** Checks one commit's event block against its accepted custody records; returns events checked. */
async function verifyBlock({ commit, records, raw, source, report, chains }: BlockCheck): Promise<number> {
  const accepted = records.filter((r) => r.outcome === 'accepted');
  if (accepted.length === 0) {
    if (await mayHold(commit, raw ?? Buffer.alloc(0), source)) {
      report({ kind: 'event', where: `block ${commit}`, detail: 'event block, but its custody records accept no event' });
    }
    return 0;
  }
  const wanted = wantedBy(source);
  let lines: string[];
  try {
    lines = await decodeLines(raw ?? Buffer.alloc(0), `event block ${commit}`);
  } catch (err) {
    for (const r of accepted.filter(wanted)) report({ kind: 'event', where: where(r), detail: (err as Error).message });
    return 0;
  }
  if (lines.length !== accepted.length) {
    report({ kind: 'event', where: `block ${commit}`, detail: `${lines.length} stored events, ${accepted.length} in the ledger` });
  }
  let checked = 0;
  accepted.forEach((r, i) => {
    if (!wanted(r)) return;
    const line = lines[i];
    checked += 1;
    if (line === undefined) return;
    if (sha256(line) !== r.eventHash) {
      report({ kind: 'event', where: where(r), detail: `stored event differs from its hash in ledger record ${r.n}` });
    }
  });
  await chains.commit(lines, report);
  return checked;
}

/** Every index key must point at a commit whose event block the ledger accepts (`backed`). */
async function checkIndexes(db: LevelDb, snapshot: Snapshot, backed: CommitSet, source: string | undefined, report: Report): Promise<void> {
  for (const prefix of ['d!', 's!', 'y!']) {
    for await (const key of db.keys({ gt: prefix, lt: `${prefix.slice(0, -1)}"`, snapshot })) {
      const tail = /!\d{8}!([0-9a-f]{16})$/.exec(key);
      const commit = tail === null ? Number.NaN : parseCommitHex(tail[1] as string);
      if (backed.has(commit)) continue;
      // Under --source, a per-source key of another source is not this one's concern; the others name no source.
      if (source !== undefined && prefix === 's!' && !key.startsWith(`s!${source}!`)) continue;
      const detail = tail === null ? 'index key names no commit' : `index key points at commit ${commit}, which holds no event block the ledger accepted`;
      report({ kind: 'event', where: `index ${key}`, detail });
    }
  }
}

/** The `r!` marker of a commit: the commit it names and that commit's custody records; `null` records for an empty (old) marker. */
interface RetentionMarker {
  commit: number;
  records: readonly CustodyRecord[] | undefined | null;
}

/** The records that retention markers name: a retention run's markers all name a few commits, in order, so each is decoded once. */
class RetentionRecords {
  constructor(private readonly custody: SnapshotCustody) {}

  async proof(marker: Buffer | undefined): Promise<RetentionMarker | undefined> {
    if (marker === undefined) return undefined;
    if (marker.length === 0) return { commit: Number.NaN, records: null };
    const text = marker.toString('latin1');
    if (!/^[0-9a-f]{16}$/.test(text)) return { commit: Number.NaN, records: undefined };
    const commit = parseCommitHex(text);
    // An unreadable block proves nothing here; the ledger walk names it when it gets there.
    return { commit, records: await this.custody.records(commit) };
  }
}

/** One of the `<prefix>!<commit hex>` key ranges, read in order alongside the ledger. */
class CommitCursor {
  private current: { commit: number; value: Buffer } | undefined;
  private read = false;
  private ended = false;

  constructor(private readonly iterator: { next(): Promise<[string, Buffer] | undefined>; close(): Promise<void> }) {}

  /** The next entry, without moving past it. */
  async peek(): Promise<{ commit: number; value: Buffer } | undefined> {
    if (!this.read && !this.ended) {
      const entry = await this.iterator.next();
      if (entry === undefined) this.ended = true;
      this.current = entry === undefined ? undefined : { commit: parseCommitHex(entry[0].slice(2)), value: entry[1] };
      this.read = true;
    }
    return this.current;
  }

  /** The value of the entry `peek` gave, moving past it. */
  take(): Buffer | undefined {
    const value = this.current?.value;
    this.current = undefined;
    this.read = false;
    return value;
  }

  /** The value at `commit`, if there is one, skipping what lies before it. */
  async seek(commit: number): Promise<Buffer | undefined> {
    for (let e = await this.peek(); e !== undefined && e.commit < commit; e = await this.peek()) this.take();
    return (await this.peek())?.commit === commit ? this.take() : undefined;
  }

  close(): Promise<void> {
    return this.iterator.close();
  }
}
