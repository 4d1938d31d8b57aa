import path from 'node:path';
import { Level } from 'level';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { CustodyRecord, EpochStatus, SourceStatus, SourcesResponse } from '../../../protocols/index.js';
import { isLevelIoError, isLevelLocked, levelMessage } from '../../../common/level-errors.js';
import { makeDir } from '../../../common/make-dir.js';
import { errorCode } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';
import { edges, epochStatus, type EpochState } from '../seq-gaps.js';
import { tallySources } from '../source-counts.js';
import type {
  ChainState,
  CommitBatch,
  CustodyInput,
  CommitResult,
  CustodyPage,
  CustodyQuery,
  EventPage,
  EventQuery,
  LedgerAnchor,
  SourcesFilter,
  Storage,
  VerifyOptions,
  VerifyReport,
} from '../types.js';
import { decodeCustodyBlock, decodeEventBlock, type EventBlock } from './block-codec.js';
import { decodeHead, type LevelHead } from './level-commit.js';
import { LevelWriter } from './level-writer.js';
import { RegistryCache } from './registry-cache.js';
import { RegistryRepairer, type RegistryRepair } from './registry-repair.js';
import { queryCustody, queryEvents } from './level-query.js';
import { applyRetention, IdWatch, RETENTION_PAGE_KEYS } from './level-retention.js';
import { verifyLevel } from './level-verify.js';
import { blockKey, custodyKey, epochKey, HEAD_KEY, idKey, pointerOf, sourceKey } from './keys.js';

export interface LevelStorageOptions {
  /** The gateway's data directory; the database lives in `<dataDir>/store`. */
  dataDir: string;
  /** Wall clock in ms; the dedup window is measured against it. */
  clock?: () => number;
  /** LevelDB block cache, bytes (default 8 MiB: the gateway's own LRU holds decoded blocks). */
  cacheSize?: number;
  /** LevelDB open table files (default 128; each costs a file descriptor and ~ a few KB). */
  maxOpenFiles?: number;
  /** LevelDB memtable, bytes (default 8 MiB). */
  writeBufferSize?: number;
  /** Decoded blocks kept for queries, bytes of their JSON text (default 16 MiB). */
  blockCacheBytes?: number;
  /**
   * zlib level for event and custody blocks, 1 (fast) – 9 (small); default 1: on
   * audit events level 6 saves ~5% of the bytes for ~2× the CPU (custody records
   * are mostly hashes, which do not compress).
   */
  compressionLevel?: number;
  /**
   * Least time between two checkpoints of the per-source registry, ms
   * (default 1000). Between them the `rs!` keys lag; a crash costs a replay
   * of the custody records written since the last one, at open.
   */
  registryCheckpointMs?: number;
  /**
   * Registry entries held in memory (LRU; a miss reads the `ra!`/`rs!` key
   * again, batched per commit). Epochs, default 25,000 (≈0.4 KB each without gaps).
   */
  registryMaxEpochs?: number;
  /**
   * Open gaps held in memory over all those epochs, default 100,000 (≈0.27 KB each read back from disk,
   * of which 0.17 KB are its two edge hashes; an epoch holds up to 1,000): ≈27 MB, as 250,000 gaps without edges were.
   */
  registryMaxGaps?: number;
  /** Sources, default 25,000 (≈0.2 KB each). */
  registryMaxSources?: number;
  /** Day-index keys a retention pass reads (and holds) at a time, default 10,000. */
  retentionPageKeys?: number;
  /**
   * Open to read only (`meteorzx verify --data-dir`): commits and retention
   * are refused and nothing is written at close — in particular no registry
   * checkpoint, so verifying a store that a crash left behind does not change
   * it. (LevelDB itself still replays its own log at open, as any open does;
   * that keeps the content as it was.)
   */
  readOnly?: boolean;
  /** Where the store says that it reopened its database after a failed write (see LevelStorage.reopen). */
  logger?: Pick<Logger, 'error' | 'warn'>;
  /** Told of each damaged registry key the store mended (registry-repair.ts); the gateway raises an alert. */
  onRegistryRepair?: (repair: RegistryRepair) => void;
}

export type LevelDb = Level<string, Buffer>;

/** Bound on remembered expired ids (LevelStorage.expired): a flood of repeats costs memory up to this. */
const MAX_EXPIRED = 100_000;
/** Retries of a reopen that failed (LevelStorage.reopen): from 1 s, doubling, up to a minute. */
const REOPEN_FIRST_MS = 1000;
const REOPEN_MAX_MS = 60_000;


/** What the query, verify and retention modules need from an open store. */
export interface LevelContext {
  db: LevelDb;
  eventBlock(commit: number): Promise<EventBlock | undefined>;
  custodyBlock(commit: number): Promise<CustodyRecord[] | undefined>;
  forgetBlock(commit: number): void;
}

/**
 * The gateway's embedded store (DESIGN §3): one synced LevelDB batch per
 * group commit, events written once as a compressed block, every index a
 * small key pointing into it. State needed at start (commit counter, ledger
 * head) sits in one key, so opening costs no scan however much is stored.
 */
export class LevelStorage implements Storage {
  readonly location: string;
  private readonly opts: Required<Omit<LevelStorageOptions, 'dataDir' | 'logger' | 'onRegistryRepair'>>;
  private readonly logger: LevelStorageOptions['logger'];
  private db: LevelDb | undefined;
  /** Set by close(): a reopen in progress stops. */
  private closed = false;
  private reopening: Promise<void> | undefined;
  /** Ends the wait between two reopen attempts (close() does not wait out a minute). */
  private wakeReopen: (() => void) | undefined;
  private writer: LevelWriter | undefined;
  private readonly epochs: RegistryCache<EpochState>;
  private readonly sourceStates: RegistryCache<SourceStatus>;
  /**
   * Ids `seen` found stored, but before the dedup window, with the commit of
   * that record: accepting one again replaces its `id!` pointer, and the
   * commit that does so indexes the earlier record under `ci!` instead
   * (custody by id finds both). The pipeline asks `seen` about every id it
   * is about to accept, so this is filled exactly when it matters; it is
   * rare (a repeat after a whole window) and bounded.
   */
  private readonly expired = new Map<string, number>();
  /** One per retention pass under way: told the ids of every commit written. */
  private readonly idWatches = new Set<IdWatch>();
  /** Registry keys a listing found damaged and stepped over, each logged once (bounded). */
  private readonly damagedRegistry = new Set<string>();
  private readonly repairer: RegistryRepairer;
  private blocks: LRUCache<number, EventBlock>;
  private custodyBlocks: LRUCache<number, { records: CustodyRecord[]; bytes: number }>;

  constructor(options: LevelStorageOptions) {
    this.location = path.join(options.dataDir, 'store');
    this.opts = {
      clock: options.clock ?? Date.now,
      cacheSize: options.cacheSize ?? 8 * 1024 * 1024,
      maxOpenFiles: options.maxOpenFiles ?? 128,
      writeBufferSize: options.writeBufferSize ?? 8 * 1024 * 1024,
      blockCacheBytes: options.blockCacheBytes ?? 16 * 1024 * 1024,
      compressionLevel: options.compressionLevel ?? 1,
      registryCheckpointMs: options.registryCheckpointMs ?? 1000,
      registryMaxEpochs: options.registryMaxEpochs ?? 25_000,
      registryMaxGaps: options.registryMaxGaps ?? 100_000,
      registryMaxSources: options.registryMaxSources ?? 25_000,
      retentionPageKeys: options.retentionPageKeys ?? RETENTION_PAGE_KEYS,
      readOnly: options.readOnly ?? false,
    };
    this.logger = options.logger;
    // Sized by text length: a block of 5,000 events and a block of one are not the same cost.
    this.blocks = new LRUCache({ maxSize: this.opts.blockCacheBytes, sizeCalculation: (b) => Math.max(1, b.bytes) });
    this.custodyBlocks = new LRUCache({ maxSize: this.opts.blockCacheBytes / 4, sizeCalculation: (b) => Math.max(1, b.bytes) });
    // Bounded, or any producer could grow the heap by varying source, epoch or seq (one entry each, up to 1,000 gaps per epoch).
    this.epochs = new RegistryCache({ max: this.opts.registryMaxEpochs, maxWeight: this.opts.registryMaxGaps, weigh: (e) => e.gaps.length });
    this.sourceStates = new RegistryCache({ max: this.opts.registryMaxSources });
    this.repairer = new RegistryRepairer(() => this.openDb, {
      custodyBlock: (commit) => this.context().custodyBlock(commit),
      logger: this.logger,
      onRepair: options.onRegistryRepair,
    });
  }

  /** What the registry holds in memory (its bounds are registryMax*): for tests and diagnostics. */
  registryHeld(): { epochs: number; gaps: number; sources: number } {
    return { epochs: this.epochs.size, gaps: this.epochs.weight, sources: this.sourceStates.size };
  }

  async open(): Promise<void> {
    if (this.db !== undefined) return;
    this.closed = false;
    let db: LevelDb;
    try {
      // Not Node's recursive mkdir: under /proc it never returns (common/make-dir.ts). Made before the
      // Level is built, which opens itself (LevelDB's own recursive mkdir) on the next tick unless opened.
      await makeDir(this.location);
      db = new Level<string, Buffer>(this.location, {
        keyEncoding: 'utf8',
        valueEncoding: 'buffer',
        cacheSize: this.opts.cacheSize,
        maxOpenFiles: this.opts.maxOpenFiles,
        writeBufferSize: this.opts.writeBufferSize,
      });
      await db.open();
    } catch (err) {
      // abstract-level's own message is only "Database failed to open"; what LevelDB said is in its cause.
      const why = isLevelLocked(err) ? 'another process has it open (a gateway already running with this data dir?)' : levelMessage(err);
      throw GatewayErrors.METEORZX_STORAGE_OPEN_FAILED(`cannot open the store at ${this.location}: ${why}`, { cause: err });
    }
    let head: LevelHead;
    try {
      head = decodeHead((await db.get(HEAD_KEY)) as Buffer | undefined);
    } catch (err) {
      await db.close();
      throw err;
    }
    this.epochs.clear();
    this.sourceStates.clear();
    this.blocks.clear();
    this.custodyBlocks.clear();
    this.expired.clear();
    this.db = db;
    this.writer = new LevelWriter(db, head, { epochs: this.epochs, sources: this.sourceStates }, {
      compressionLevel: this.opts.compressionLevel,
      load: async (batch) => {
        const held = this.writer?.durableSources;
        await Promise.all([this.loadEpochs(batch.seqs.map((s) => epochKey(s.agent, s.epoch))), this.loadSources(batch.custody, held)]);
      },
      superseded: (id) => {
        const commit = this.expired.get(id);
        if (commit !== undefined) this.expired.delete(id);
        return commit;
      },
      written: (batch) => {
        for (const watch of this.idWatches) watch.written(batch.events);
      },
      clock: this.opts.clock,
      checkpointMs: this.opts.registryCheckpointMs,
      replaySources: (after, upTo) => this.replaySources(db, after, upTo),
    });
    try {
      await this.writer.recover();
    } catch (err) {
      this.db = undefined;
      this.writer = undefined;
      await db.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeReopen?.();
    await this.reopening;
    const db = this.db;
    if (db === undefined) return;
    const writer = this.writer;
    this.db = undefined;
    this.writer = undefined;
    try {
      await writer?.idle();
      if (!this.opts.readOnly) await writer?.checkpoint();
    } finally {
      await db.close();
    }
  }

  private get openDb(): LevelDb {
    if (this.db === undefined) throw GatewayErrors.METEORZX_STORAGE_CLOSED('storage is not open');
    return this.db;
  }

  private get openWriter(): LevelWriter {
    if (this.writer === undefined) throw GatewayErrors.METEORZX_STORAGE_CLOSED('storage is not open');
    return this.writer;
  }

  /** The writer, for what writes (commit, retention): refused on a store opened read-only. */
  private get writingWriter(): LevelWriter {
    const writer = this.openWriter;
    if (this.opts.readOnly) throw GatewayErrors.METEORZX_STORAGE_FAILED('storage is open read-only (meteorzx verify): nothing is written');
    return writer;
  }

  async seen(ids: readonly string[], windowMs: number): Promise<Set<string>> {
    const out = new Set<string>();
    if (ids.length === 0) return out;
    const values = await this.openDb.getMany(ids.map(idKey));
    const oldest = this.opts.clock() - windowMs;
    const damaged: string[] = [];
    const head = this.openWriter.plannedHead.commit;
    values.forEach((value, i) => {
      if (value === undefined) return;
      const pointer = pointerOf(value.toString());
      if (pointer === undefined || pointer.commit > head) {
        // Damage, but the key says the id was stored: taking the event as new stored it a second time
        // (and a value that half-decoded wrote a `ci!` key for a commit that does not exist).
        out.add(ids[i] as string);
        damaged.push(idKey(ids[i] as string));
        return;
      }
      if (pointer.receivedMs >= oldest) out.add(ids[i] as string);
      else {
        if (this.expired.size >= MAX_EXPIRED) this.expired.clear();
        this.expired.set(ids[i] as string, pointer.commit);
      }
    });
    if (damaged.length > 0) {
      this.logger?.warn({ keys: damaged.slice(0, 10), count: damaged.length }, 'dedup: a damaged id pointer; its id is taken as stored (run meteorzx verify)');
    }
    return out;
  }

  async chainHead(agent: string, epoch: string): Promise<ChainState | undefined> {
    const key = epochKey(agent, epoch);
    const read = await this.loadEpochs([key]);
    // The cache first: a commit planned meanwhile holds a newer state than the one read.
    const state = this.epochs.get(key) ?? read.get(key);
    if (state === undefined) return undefined;
    // A head that arrived unchained still has the gaps below it, with their edges: the epoch is not a new one.
    const head: ChainState = { seq: state.lastSeq };
    if (state.lastHash !== undefined) head.hash = state.lastHash;
    if (state.gaps.length > 0) head.gaps = state.gaps.map(({ from, to, lowerHash, upperPrev }) => ({ from, to, ...edges(lowerHash, upperPrev) }));
    return head;
  }

  writable(): boolean {
    return this.db !== undefined;
  }

  /** Pipelined: may be called again before the previous commit settled (see LevelWriter). */
  commit(batch: CommitBatch): Promise<CommitResult> {
    try {
      return this.writingWriter.commit(batch).catch((err: unknown) => this.failedWrite(err));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** After a write failed (a commit, or a retention batch with no commit behind it): an I/O error reopens the database. */
  private failedWrite(err: unknown): never {
    if (isLevelIoError(err)) this.reopening ??= this.reopen(err).finally(() => (this.reopening = undefined));
    throw err;
  }

  /**
   * Once a write, or a flush of its memtable, fails with an I/O error (a
   * full disk, most likely), LevelDB refuses every later write on that
   * handle, even after room is made: the store would refuse commits until
   * the gateway restarts. So the database is closed and opened again, as at
   * start (the head is read from disk: a write whose sync failed may have
   * landed after all, and its ids are then found by dedup when the client
   * sends them again). Commits and queries meanwhile get
   * METEORZX_STORAGE_CLOSED (503); an open that fails (the disk still full)
   * is retried after 1 s, doubling up to a minute, until close().
   */
  private async reopen(cause: unknown): Promise<void> {
    const db = this.db;
    const writer = this.writer;
    if (db === undefined) return;
    this.db = undefined;
    this.writer = undefined;
    this.logger?.error({ err: cause }, 'store: a write failed with an I/O error; reopening the database (LevelDB refuses all writes after one)');
    await writer?.idle();
    await db.close().catch(() => undefined);
    for (let delay = REOPEN_FIRST_MS; !this.closed; delay = Math.min(delay * 2, REOPEN_MAX_MS)) {
      try {
        await this.open();
        this.logger?.warn('store: the database is open again');
        return;
      } catch (err) {
        this.logger?.error({ err, retryInMs: delay }, 'store: the database cannot be opened again; retrying');
        await new Promise<void>((resolve) => {
          this.wakeReopen = resolve;
          setTimeout(resolve, delay).unref();
        });
        this.wakeReopen = undefined;
      }
    }
  }

  /**
   * Loads into the cache the epochs of `keys` that it does not hold, with one
   * `getMany` for all of them; returns those it read (the cache may evict
   * them again at the next commit's plan).
   */
  private async loadEpochs(keys: readonly string[]): Promise<Map<string, EpochState>> {
    const read = new Map<string, EpochState>();
    const missing = [...new Set(keys)].filter((k) => !this.epochs.has(k));
    if (missing.length === 0) return read;
    const values = await this.openDb.getMany(missing);
    for (const [i, v] of values.entries()) {
      if (v === undefined) continue;
      const key = missing[i] as string;
      const state = decodeRegistry<EpochState>(v);
      // Damaged: kept aside, and the epoch taken as new (registry-repair.ts), not every later commit of it failed.
      if (state === undefined) {
        await this.repairer.epoch(key, v);
        continue;
      }
      read.set(key, state);
      // A plan may have set it while this read was under way: that state is newer.
      this.epochs.setIfAbsent(key, state);
    }
    return read;
  }

  /**
   * Loads into the cache the registry state of every source `records` name
   * that it does not hold: from `held` (the writer's durable states not yet
   * checkpointed, newer than their `rs!` key), else from the key. Copied, not
   * just looked up there at plan time: a checkpoint landing meanwhile empties `held`.
   */
  private async loadSources(records: readonly Pick<CustodyInput, 'source'>[], held?: ReadonlyMap<string, SourceStatus>): Promise<void> {
    const wanted = new Set<string>();
    for (const r of records) {
      if (r.source === undefined || this.sourceStates.has(r.source)) continue;
      const state = held?.get(r.source);
      if (state !== undefined) this.sourceStates.set(r.source, state);
      else wanted.add(r.source);
    }
    if (wanted.size === 0) return;
    const missing = [...wanted];
    // Neither held nor in flight: every commit of these sources is durable, so the ledger up to the durable head has all of them.
    const upTo = this.openWriter.durableHead.commit;
    const values = await this.openDb.getMany(missing.map(sourceKey));
    for (const [i, v] of values.entries()) {
      if (v === undefined) continue;
      const source = missing[i] as string;
      // Damaged: counted again from the ledger (registry-repair.ts), not every later commit of the source failed.
      const state = decodeRegistry<SourceStatus>(v) ?? (await this.repairer.source(sourceKey(source), source, v, upTo));
      if (state !== undefined) this.sourceStates.setIfAbsent(source, state);
    }
  }

  /** Counts the custody records of commits `after` + 1 … `upTo` onto the `rs!` keys (at open, after a crash). */
  private async replaySources(db: LevelDb, after: number, upTo: number): Promise<Map<string, SourceStatus>> {
    const states = new Map<string, SourceStatus>();
    for (let commit = after + 1; commit <= upTo; commit += 1) {
      const raw = (await db.get(custodyKey(commit))) as Buffer | undefined;
      if (raw === undefined) continue;
      // An unreadable block cannot be counted; the counts of its sources stay short of it, and `verify` names it.
      const records = await decodeCustodyBlock(commit, raw).catch((err: unknown) => {
        this.logger?.warn(
          { commit, err: (err as Error).message },
          'store: a custody block written after the last registry checkpoint cannot be read; the per-source counts leave it out (run meteorzx verify)',
        );
        return [];
      });
      const unread = [...new Set(records.flatMap((r) => (r.source !== undefined && !states.has(r.source) ? [r.source] : [])))];
      const stored = new Map<string, SourceStatus>();
      for (const [i, v] of (await db.getMany(unread.map(sourceKey))).entries()) {
        // The `rs!` keys are as of commit `after` (the checkpoint): a damaged one is counted again up to there.
        if (v === undefined) continue;
        const source = unread[i] as string;
        const state = decodeRegistry<SourceStatus>(v) ?? (await this.repairer.source(sourceKey(source), source, v, after));
        if (state !== undefined) stored.set(source, state);
      }
      for (const [source, state] of tallySources(records, (s) => states.get(s) ?? stored.get(s))) states.set(source, state);
    }
    return states;
  }

  private context(): LevelContext {
    const db = this.openDb;
    return {
      db,
      eventBlock: async (commit) => {
        const cached = this.blocks.get(commit);
        if (cached !== undefined) return cached;
        const raw = (await db.get(blockKey(commit))) as Buffer | undefined;
        if (raw === undefined) return undefined;
        const block = await decodeEventBlock(commit, raw);
        this.blocks.set(commit, block);
        return block;
      },
      custodyBlock: async (commit) => {
        const cached = this.custodyBlocks.get(commit);
        if (cached !== undefined) return cached.records;
        const raw = (await db.get(custodyKey(commit))) as Buffer | undefined;
        if (raw === undefined) return undefined;
        const records = await decodeCustodyBlock(commit, raw);
        this.custodyBlocks.set(commit, { records, bytes: raw.length * 4 });
        return records;
      },
      forgetBlock: (commit) => {
        this.blocks.delete(commit);
      },
    };
  }

  query(q: EventQuery): Promise<EventPage> {
    return queryEvents(this.context(), q);
  }

  async custody(q: CustodyQuery): Promise<CustodyRecord[]> {
    const page = await queryCustody(this.context(), q);
    // Records alone cannot say what they leave out: a damaged block fails the read, as it did before pages named it.
    const damage = page.damaged?.[0];
    if (damage !== undefined) throw GatewayErrors.METEORZX_STORAGE_CORRUPT(damage.error);
    return page.records;
  }

  custodyPage(q: CustodyQuery): Promise<CustodyPage> {
    return queryCustody(this.context(), q);
  }

  async agentEpochs(agent?: string, damaged?: string[]): Promise<EpochStatus[]> {
    const out: EpochStatus[] = [];
    // Agent ids hold no `!` (SOURCE_RE): `ra!<agent>!` is exactly that agent's epochs.
    const range = agent === undefined ? { gt: 'ra!', lt: 'ra"' } : { gt: `ra!${agent}!`, lt: `ra!${agent}"` };
    for await (const [key, value] of this.openDb.iterator(range)) {
      const state = this.listed<EpochState>(key, value, damaged);
      if (state !== undefined) out.push(epochStatus(state));
    }
    return out;
  }

  /**
   * A registry value for a listing (`/v1/sources`, the backfill and gap scans), or undefined for a damaged
   * one, which is stepped over, added to `damaged` and logged once: one damaged key failed the whole list,
   * so `meteorzx status` showed no source at all and backfill stopped for every agent. The next commit of
   * that source or epoch mends it (registry-repair.ts); until then `meteorzx verify` names it.
   */
  private listed<T>(key: string, value: Buffer, damaged: string[] | undefined): T | undefined {
    try {
      return registryValue<T>(key, value);
    } catch (err) {
      if (errorCode(err) !== 'METEORZX_STORAGE_CORRUPT') throw err;
      damaged?.push(key);
      if (!this.damagedRegistry.has(key) && this.damagedRegistry.size < 10_000) {
        this.damagedRegistry.add(key);
        this.logger?.error({ key }, 'registry: a damaged key is left out of listings until the next commit of its source or epoch mends it (run meteorzx verify)');
      }
      return undefined;
    }
  }

  async sources(filter: SourcesFilter = {}): Promise<SourcesResponse> {
    const db = this.openDb;
    const { source } = filter;
    // The registry's `rs!` keys lag up to a checkpoint behind; the writer holds what is newer. Counters only
    // grow, so of two states of a source the one with more attempts is the later (a checkpoint may land meanwhile).
    const later = (stored: SourceStatus | undefined, held: SourceStatus | undefined): SourceStatus | undefined =>
      stored === undefined || (held !== undefined && attempts(held) > attempts(stored)) ? held : stored;
    const damaged: string[] = [];
    const withDamage = (r: SourcesResponse): SourcesResponse => (damaged.length === 0 ? r : { ...r, damaged });
    if (source !== undefined) {
      const raw = await db.get(`rs!${source}`);
      const one = later(raw === undefined ? undefined : this.listed<SourceStatus>(sourceKey(source), raw, damaged), this.openWriter.durableSources.get(source));
      return withDamage({ epochs: await this.agentEpochs(source, damaged), sources: one === undefined ? [] : [one] });
    }
    const { after, limit } = filter;
    // Source ids hold only [A-Za-z0-9._:-] (SOURCE_RE), all above `"`: `rs!<after>` and `ra!<after>"` bound the keys after it.
    const stored: SourceStatus[] = [];
    const range = after === undefined ? { gt: 'rs!', lt: 'rs"' } : { gt: `rs!${after}`, lt: 'rs"' };
    let read = 0;
    for await (const [key, value] of db.iterator(limit === undefined ? range : { ...range, limit: limit + 1 })) {
      read += 1;
      const status = this.listed<SourceStatus>(key, value, damaged);
      if (status !== undefined) stored.push(status);
    }
    const newer = new Map([...this.openWriter.durableSources].filter(([s]) => after === undefined || s > after));
    let sources = stored.map((st) => {
      const held = newer.get(st.source);
      newer.delete(st.source);
      return later(st, held) as SourceStatus;
    });
    if (newer.size > 0) sources = [...sources, ...newer.values()].sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
    // Of the keys past the first `limit` read, none can be among the first `limit` of the union.
    const more = limit !== undefined && (sources.length > limit || read > limit);
    if (limit !== undefined) sources = sources.slice(0, limit);
    const next = more ? sources.at(-1)?.source : undefined;
    const epochs: EpochStatus[] = [];
    const epochRange = { gt: after === undefined ? 'ra!' : `ra!${after}"`, lt: next === undefined ? 'ra"' : `ra!${next}"` };
    for await (const [key, value] of db.iterator(epochRange)) {
      const state = this.listed<EpochState>(key, value, damaged);
      if (state !== undefined) epochs.push(epochStatus(state));
    }
    return withDamage(next === undefined ? { epochs, sources } : { epochs, sources, next });
  }

  ledgerHead(): LedgerAnchor | undefined {
    const { n, hash } = this.openWriter.durableHead;
    return hash === undefined ? undefined : { n, hash };
  }

  verify(opts: VerifyOptions = {}): Promise<VerifyReport> {
    return verifyLevel(this.openDb, opts);
  }

  applyRetention(before: number): Promise<number> {
    try {
      const ctx = this.context();
      const writer = this.writingWriter;
      // The pass reads (old, immutable) blocks and keys alongside ingest; only each batch's write takes the
      // writer alone, so commits wait for one synced batch at a time, not for the whole pass.
      const watch = new IdWatch();
      this.idWatches.add(watch);
      const damaged = (commit: number, err: unknown): void =>
        this.logger?.error({ commit, err: (err as Error).message }, 'retention: an event block due for deletion cannot be read; it is kept, the pass goes on (run meteorzx verify)');
      return applyRetention(ctx, before, this.opts.clock(), (build) => writer.exclusive((append) => append(build)), watch, this.opts.retentionPageKeys, damaged)
        .catch((err: unknown) => this.failedWrite(err))
        .finally(() => this.idWatches.delete(watch));
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

/**
 * A registry key's value (`ra!`, `rs!`). A damaged one is METEORZX_STORAGE_CORRUPT naming the key, not an
 * internal error from parsing it or reading a field of it: `meteorzx verify` names every such key.
 */
function registryValue<T>(key: string, value: Buffer): T {
  const parsed = decodeRegistry<T>(value);
  if (parsed === undefined) {
    throw GatewayErrors.METEORZX_STORAGE_CORRUPT(`registry key ${key} is damaged: it holds ${JSON.stringify(value.toString('latin1').slice(0, 40))} (run meteorzx verify)`);
  }
  return parsed;
}

/** A registry key's value, or undefined when it is damaged (not a JSON object). */
function decodeRegistry<T>(value: Buffer): T | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString());
  } catch {
    return undefined;
  }
  return typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) ? undefined : (parsed as T);
}

function attempts(s: SourceStatus): number {
  return s.accepted + s.duplicates + s.rejected;
}
