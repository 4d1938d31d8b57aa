import type {
  CustodyOutcome,
  CustodyRecord,
  EpochStatus,
  SourcesResponse,
  StoredEvent,
} from '../../protocols/index.js';
import type { EdgedGap, SeqRange } from './seq-gaps.js';

/**
 * Storage backends (LevelDB now, PostgreSQL next) implement this; one
 * conformance suite (test/conformance/storage-suite.ts) runs against each.
 * The pipeline's committer is the only writer: it calls `commit` once per
 * group commit, so everything in a CommitBatch becomes durable together —
 * a crash can never leave an id marked seen but not stored.
 */

/** A custody entry before the ledger numbers and chains it. */
export type CustodyInput = Omit<CustodyRecord, 'n' | 'prev' | 'hash'> & { outcome: CustodyOutcome };

/** A seq an agent's chain delivered (counted even when dedup dropped the event, DESIGN §4). */
export interface SeqSeen {
  agent: string;
  epoch: string;
  seq: number;
  source: string;
  /** The event's hash as it arrived; the registry keeps the highest seq's as the chain head, and a gap's lower edge. */
  hash?: string;
  /** The event's `prev` as it arrived: the upper edge of a gap it opens or splits (see GapEdges). */
  prev?: string;
  /** When it arrived (RFC 3339); opens gaps and sets last seen. */
  at?: string;
  /**
   * Set when the event is the agent's own `meteorzx.gap`, chained in this epoch and verified: the seqs it
   * names lost. The registry marks the gaps there reported by the agent (seq-gaps.ts, markReported).
   */
  lost?: SeqRange;
}

/** Where an (agent, epoch) chain stands: its head, and its open gaps with their edges (a copy: the caller may change it). */
export interface ChainState {
  /** The highest seq received. */
  seq: number;
  /** Its hash; absent when it arrived unchained (the next seq is then checked on its content only). */
  hash?: string;
  /** Absent when there are none. */
  gaps?: EdgedGap[];
}

export interface CommitBatch {
  /** New events, after dedup, exactly as they are to be stored. */
  events: readonly StoredEvent[];
  /**
   * The RFC 8785 canonical JSON of `events[i]`, where the pipeline already
   * has it (read from an agent's line, protocols/canonical-line.ts); the
   * storage writes it as it is. Undefined entries (or no array) are
   * serialised by the storage.
   */
  lines?: readonly (string | undefined)[];
  /**
   * One record per ingestion attempt, in arrival order. The `accepted` records
   * appear in the same order as `events`, and the storage fills their
   * `eventHash` from the bytes it stores (it is the authority on "as stored").
   */
  custody: readonly CustodyInput[];
  /** Registry updates for every chained event that arrived (accepted or duplicate). */
  seqs: readonly SeqSeen[];
  // The per-source registry is counted from `custody` (tallySources), so it cannot disagree with the ledger.
}

export interface CommitResult {
  /** The custody records as chained into the ledger, same order as the input. */
  custody: CustodyRecord[];
}

export interface EventQuery {
  /** Only the stored copies of this event id (found by its dedup pointer and custody keys, not by a scan). */
  id?: string;
  source?: string;
  type?: string;
  /** Inclusive, RFC 3339 or ms epoch; compared with the receive time. */
  since?: number;
  /** Exclusive. */
  until?: number;
  limit: number;
  /**
   * Most bytes of NDJSON a page may hold (each event's JSON line and its
   * newline); a page holds at least one event whatever its size. Without it,
   * only `limit` bounds a page.
   */
  maxBytes?: number;
  /** Opaque, from a previous page's `nextCursor`. */
  cursor?: string;
}

/**
 * A stored block a read could not decode (a flipped byte on disk, a bad
 * line): what it held is left out of the answer, which names it instead, so
 * a damaged block costs its own events or records, not the page around them.
 */
export interface DamagedBlock {
  /** `event` (a block of events), `custody` (a block of custody records) or `pointer` (an id's dedup pointer, `key`). */
  kind: 'event' | 'custody' | 'pointer';
  /** The commit the block belongs to: `block <commit>` in `meteorzx verify`; for a pointer, the commit it names, when it names one. */
  block?: number;
  /** A damaged pointer's key (`id!<id>`), as `meteorzx verify` names it. */
  key?: string;
  /** Receive times (RFC 3339) of its first and last event, where the key that led to it records them. */
  receivedFrom?: string;
  receivedTo?: string;
  /** Events the block holds, by its commit's custody records (accepted ones), where those can be read. */
  events?: number;
  /** Why it cannot be read. */
  error: string;
}

export interface EventPage {
  events: StoredEvent[];
  nextCursor?: string;
  /** Blocks this page would have read events from but could not decode; absent when there were none. */
  damaged?: DamagedBlock[];
}

export interface CustodyQuery {
  id?: string;
  source?: string;
  limit?: number;
  /** Resume after the last record of an earlier page (its CustodyPage.nextCursor). */
  cursor?: string;
}

export interface CustodyPage {
  records: CustodyRecord[];
  /** Given only when another matching record exists after this page's last. */
  nextCursor?: string;
  /** Custody blocks this page would have read records from but could not decode; absent when there were none. */
  damaged?: DamagedBlock[];
}

export interface VerifyProblem {
  /** `ledger` for the custody chain, `event` for a stored event or index key, `registry` for a per-source or per-epoch key. */
  kind: 'ledger' | 'event' | 'registry';
  /** Ledger position, event id, or the key. */
  where: string;
  detail: string;
}

export interface VerifyReport {
  ok: boolean;
  ledgerRecords: number;
  events: number;
  /** The first problems found, in storage order (capped). */
  problems: VerifyProblem[];
  /** Every problem found, also those past the cap of `problems`. */
  problemCount: number;
  /**
   * The last custody record the walk read: its number and hash, the anchor
   * an operator keeps outside the gateway (`VerifyOptions.anchor`). Absent
   * for an empty ledger, or one whose last block cannot be read.
   */
  ledgerHead?: LedgerAnchor;
}

/** A custody record's number and hash, kept outside the gateway to prove later that the ledger up to it is unchanged. */
export interface LedgerAnchor {
  n: number;
  hash: string;
}

export interface VerifyOptions {
  /** Only events and index keys of this source (the ledger is always checked whole). */
  source?: string;
  /**
   * A record the ledger must still hold with this hash. Each record's hash
   * covers every record before it, so a ledger cut short or rewritten at or
   * before `n` fails — what the chain alone cannot show when its end is
   * rewritten along with the head.
   */
  anchor?: LedgerAnchor;
  onProgress?: (done: number) => void;
}

export interface SourcesFilter {
  source?: string;
  /** Sources after this one (in code-unit order), with `limit`. */
  after?: string;
  /** Sources per page; unset, all. */
  limit?: number;
}

export interface Storage {
  open(): Promise<void>;
  close(): Promise<void>;
  /**
   * Which of these ids are already stored and still inside the dedup window.
   * Reads the on-disk index; the pipeline keeps a bounded cache in front.
   */
  seen(ids: readonly string[], windowMs: number): Promise<Set<string>>;
  /**
   * Where an (agent, epoch) chain stood after the highest seq received, and
   * its open gaps with their edges, from the registry; seeds the pipeline's
   * integrity check after a restart.
   */
  chainHead(agent: string, epoch: string): Promise<ChainState | undefined>;
  /**
   * Writes the whole batch as one durable (synced) write. The pipeline may
   * call it again before the previous call settled (it prepares commit k+1
   * while k is written): commits are applied and settle in call order, and
   * a backend that plans a commit on top of an unsettled one (ledger chain,
   * registry) must fail it when that one fails. A backend that cannot
   * overlap simply runs them one after another.
   */
  commit(batch: CommitBatch): Promise<CommitResult>;
  query(q: EventQuery): Promise<EventPage>;
  /** A page of custody records, oldest first: custodyPage's records alone (a damaged block is thrown, not skipped). */
  custody(q: CustodyQuery): Promise<CustodyRecord[]>;
  custodyPage(q: CustodyQuery): Promise<CustodyPage>;
  /**
   * Every source and agent epoch; with `source`, only that source and the epochs of the agent of that id;
   * with `limit`, a page of that many sources after `after` (SourcesResponse.next).
   */
  sources(filter?: SourcesFilter): Promise<SourcesResponse>;
  /** The `epochs` part of `sources()` alone: what backfill scans, without reading every source's counts. */
  agentEpochs(agent?: string): Promise<EpochStatus[]>;
  /** Recomputes the ledger chain and every stored event's hash. */
  verify(opts?: VerifyOptions): Promise<VerifyReport>;
  /** The last durable custody record's number and hash (undefined for an empty ledger); logged as an anchor to keep. */
  ledgerHead?(): LedgerAnchor | undefined;
  /** Deletes whole days of events received before `before` (ms epoch); returns events deleted. */
  applyRetention(before: number): Promise<number>;
  /**
   * False while the store cannot take a commit: its database is closed and
   * being opened again after a failed write (LevelStorage.reopen).
   * `/readyz` answers 503 meanwhile. A backend without it is always writable.
   */
  writable?(): boolean;
}
