import type { CustodyRecord, SourceStatus } from '../../../protocols/index.js';
import { sha256Hex as sha256 } from '../../../protocols/index.js';
import { fastCanonicalJson } from '../../../protocols/index.js';
import { chainCustody, type LedgerHead } from '../ledger.js';
import { newEpochState, recordSeq, type EpochState } from '../seq-gaps.js';
import { tallySources } from '../source-counts.js';
import type { CommitBatch } from '../types.js';
import { GatewayErrors } from '../../errors.js';
import { encodeLines } from './block-codec.js';
import {
  blockKey,
  commitHex,
  custodyIdKey,
  custodyKey,
  dayOf,
  EMPTY_VALUE,
  encodePointer,
  epochKey,
  HEAD_KEY,
  idKey,
  indexKeys,
  sourceKey,
} from './keys.js';

export interface LevelHead extends LedgerHead {
  /** Number of the last commit, 0 before the first. */
  commit: number;
  /**
   * The commit as of which every `rs!` key is current (the last registry
   * checkpoint); the sources of later commits are counted again from their
   * custody blocks at open. Absent in stores that wrote `rs!` with every commit.
   */
  sourcesAt?: number;
}

/** The registry state of a key as of the last planned commit: every key the batch names must be loaded. */
export interface RegistryView<V> {
  get(key: string): V | undefined;
}

export type PutOp = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

export interface CommitPlan {
  ops: PutOp[];
  records: CustodyRecord[];
  head: LevelHead;
  epochs: Map<string, EpochState>;
  /** The new state of each source this commit's custody records name. */
  sources: Map<string, SourceStatus>;
}

export interface PlanOptions {
  compressionLevel: number;
  /**
   * For an id accepted again after its dedup window: the commit holding its
   * earlier accepted record, whose `id!` pointer this commit replaces. That
   * commit gets a `ci!` key, so custody by id still finds the earlier record.
   */
  superseded?: ((id: string) => number | undefined) | undefined;
  /**
   * Set when this commit is a registry checkpoint: the sources changed since
   * the last one (besides this commit's own), whose `rs!` keys it writes
   * from the registry, with this commit's sources. Other commits write no
   * `rs!` key: with a source per device, rewriting every source's counters
   * in every commit was a quarter of the keys and 5–10% of the gateway's
   * CPU per MQTT message.
   */
  checkpoint?: ReadonlySet<string> | undefined;
}


/** The `rs!` writes of the named sources' registry states (`state` gives each; a source it does not know is skipped). */
export function sourcePuts(names: Iterable<string>, state: (source: string) => SourceStatus | undefined): PutOp[] {
  const ops: PutOp[] = [];
  for (const source of names) {
    const status = state(source);
    if (status !== undefined) ops.push({ type: 'put', key: sourceKey(source), value: Buffer.from(JSON.stringify(status)) });
  }
  return ops;
}

/** The `m!head` write. */
/**
 * The `m!head` value as written by headPut; a damaged one (not JSON, or
 * without whole numbers for its commit and record) is METEORZX_STORAGE_CORRUPT
 * naming the key, not whatever reading a field of it would throw.
 */
export function decodeHead(raw: Buffer | undefined): LevelHead {
  if (raw === undefined) return { commit: 0, n: 0, hash: undefined };
  let head: unknown;
  try {
    head = JSON.parse(raw.toString());
  } catch {
    head = undefined;
  }
  const h = head as Partial<LevelHead> | null | undefined;
  const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
  if (
    typeof h !== 'object' || h === null || !count(h.commit) || !count(h.n) || (h.sourcesAt !== undefined && !count(h.sourcesAt)) ||
    (h.hash !== undefined && typeof h.hash !== 'string')
  ) {
    throw GatewayErrors.METEORZX_STORAGE_CORRUPT(`the ledger head (${HEAD_KEY}) is damaged: it holds ${JSON.stringify(raw.toString('latin1').slice(0, 80))}`);
  }
  return h as LevelHead;
}

export function headPut(head: LevelHead): PutOp {
  return { type: 'put', key: HEAD_KEY, value: Buffer.from(JSON.stringify(head)) };
}

/**
 * Everything one commit writes, as one list of operations for one synced
 * `db.batch`: the events once (compressed), small index keys pointing into
 * them, the chained custody records (compressed), registry updates and the
 * new head. Registry states are copies: the caller adopts them only after
 * the write succeeded.
 */
export async function planCommit(
  batch: CommitBatch,
  head: LevelHead,
  registry: { epochs: RegistryView<EpochState>; sources: RegistryView<SourceStatus> },
  { compressionLevel, superseded, checkpoint }: PlanOptions,
): Promise<CommitPlan> {
  const commit = head.commit + 1;
  const ops: PutOp[] = [];
  const lines = batch.events.map((e, i) => batch.lines?.[i] ?? fastCanonicalJson(e));
  const eventHashes = lines.map(sha256);

  const chained = chainCustody(batch.custody, head, eventHashes);
  // Both blocks compress at once: under CPU contention every trip to the thread pool costs a wait.
  const [eventBlock, custodyBlock] = await Promise.all([
    lines.length > 0 ? encodeLines(lines, compressionLevel) : undefined,
    chained.records.length > 0 ? encodeLines(chained.lines, compressionLevel) : undefined,
  ]);

  if (eventBlock !== undefined) {
    ops.push({ type: 'put', key: blockKey(commit), value: eventBlock });
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    const sources = new Set<string>();
    const types = new Set<string>();
    // Events of one caller share a receive time: parse each distinct one once.
    let lastAt = '';
    let lastMs = Number.NaN;
    batch.events.forEach((event, index) => {
      if (event.ingest.receivedAt !== lastAt) {
        lastAt = event.ingest.receivedAt;
        lastMs = Date.parse(lastAt);
      }
      const ms = lastMs;
      if (ms < min) min = ms;
      if (ms > max) max = ms;
      sources.add(event.source);
      types.add(event.type);
      ops.push({ type: 'put', key: idKey(event.id), value: Buffer.from(encodePointer({ commit, index, receivedMs: ms })) });
      const earlier = superseded?.(event.id);
      if (earlier !== undefined && earlier !== commit) ops.push({ type: 'put', key: custodyIdKey(event.id, earlier), value: EMPTY_VALUE });
    });
    const range = Buffer.from(`${min},${max}`);
    for (const key of indexKeys(dayOf(max), commit, sources, types)) ops.push({ type: 'put', key, value: range });
  }

  if (custodyBlock !== undefined) {
    ops.push({ type: 'put', key: custodyKey(commit), value: custodyBlock });
    const hex = commitHex(commit);
    const custodySources = new Set<string>();
    for (const record of chained.records) {
      if (record.source !== undefined) custodySources.add(record.source);
      // Accepted records are found through the id! pointer; only the others need their own key.
      if (record.id !== undefined && record.outcome !== 'accepted') ops.push({ type: 'put', key: `ci!${record.id}!${hex}`, value: EMPTY_VALUE });
    }
    for (const s of custodySources) ops.push({ type: 'put', key: `cs!${s}!${hex}`, value: EMPTY_VALUE });
  }

  const epochs = new Map<string, EpochState>();
  for (const seen of batch.seqs) {
    const key = epochKey(seen.agent, seen.epoch);
    const at = seen.at ?? batch.custody[0]?.at ?? new Date().toISOString();
    let state = epochs.get(key);
    if (state === undefined) {
      const known = registry.epochs.get(key);
      state = known === undefined ? newEpochState(seen.agent, seen.epoch, at) : structuredClone(known);
      epochs.set(key, state);
    }
    recordSeq(state, seen, at);
  }
  for (const [key, state] of epochs) ops.push({ type: 'put', key, value: Buffer.from(JSON.stringify(state)) });

  const sources = tallySources(batch.custody, (source) => registry.sources.get(source));
  if (checkpoint !== undefined) {
    const names = new Set([...sources.keys(), ...checkpoint]);
    ops.push(...sourcePuts(names, (source) => sources.get(source) ?? registry.sources.get(source)));
  }

  const sourcesAt = checkpoint !== undefined ? commit : (head.sourcesAt ?? head.commit);
  const newHead: LevelHead = { commit, n: chained.head.n, hash: chained.head.hash, sourcesAt };
  ops.push(headPut(newHead));
  return { ops, records: chained.records, head: newHead, epochs, sources };
}
