import type { CustodyRecord, SourceStatus } from '../../../protocols/index.js';
import { isLevelIoError } from '../../../common/level-errors.js';
import { GatewayErrors } from '../../errors.js';
import type { EpochState } from '../seq-gaps.js';
import type { CommitBatch, CommitResult, CustodyInput } from '../types.js';
import { headPut, planCommit, sourcePuts, type LevelHead, type PutOp } from './level-commit.js';
import type { LevelDb } from './level-storage.js';
import type { RegistryCache } from './registry-cache.js';

/**
 * Registry states as of the last planned commit (speculative: ahead of the
 * disk while writes are in flight), bounded: an entry that is not held is
 * read from its key (epochs), or from `durableSources` and then its key
 * (sources).
 */
export interface Registry {
  epochs: RegistryCache<EpochState>;
  sources: RegistryCache<SourceStatus>;
}

export interface LevelWriterOptions {
  compressionLevel: number;
  /** Loads into the cache the registry entries a batch touches that it does not hold yet (from disk). */
  load: (batch: CommitBatch) => Promise<void>;
  /** See planCommit: the earlier commit of an id accepted again after its dedup window. */
  superseded?: (id: string) => number | undefined;
  /** Told of each commit once it is written (see IdWatch). */
  written?: (batch: CommitBatch) => void;
  /** Wall clock, ms. */
  clock: () => number;
  /** The least time between two registry checkpoints (see planCommit's `checkpoint`), ms. */
  checkpointMs: number;
  /**
   * The state of every source named by the custody records of commits
   * `after` + 1 … `upTo`, counted onto its `rs!` key (a replay of the
   * ledger since the last checkpoint).
   */
  replaySources: (after: number, upTo: number) => Promise<Map<string, SourceStatus>>;
}

/**
 * Writes `ops` with custody records as one commit (LevelWriter.exclusive).
 * `build` gets the number that commit will have.
 */
export type AppendRecords = (build: (commit: number) => { ops: PutOp[]; custody: CustodyInput[] }) => Promise<CustodyRecord[]>;

/** The commits called between two failed writes; `endedBy` is the failed write that ended it. */
interface Era {
  endedBy?: { write: 'commit' | 'retention'; err: unknown };
}

/**
 * Orders the store's writes and lets commits overlap (pipelining, see the
 * pipeline's GroupCommitter): commit k+1 is planned — serialised, hashed,
 * compressed, chained onto k's last custody hash — while k's synced write
 * is in flight, then written as soon as k's write ends. Writes never overlap
 * and land in call order, so the disk always holds a prefix of the commits.
 *
 * Plans build on the planned head and registry, not the durable ones. So
 * when a write fails, every commit planned before that failure is known
 * fails too (METEORZX_STORAGE_FAILED): its ledger records chain onto
 * records that were never written. The planned state then falls back to
 * what is durable, and commits called afterwards proceed normally. A failed
 * retention write (exclusive) fails the commits called while it was under
 * way in the same way, and their error names it, when that failure was an
 * I/O error (the store reopens its database then); after any other, they go on.
 */
export class LevelWriter {
  private durable: LevelHead;

  /** The head of what is written and synced. */
  get durableHead(): LevelHead {
    return this.durable;
  }
  private planned: LevelHead;

  /** The head of what is planned: no key the store holds names a later commit. */
  get plannedHead(): LevelHead {
    return this.planned;
  }
  /** Ended by every failed write, which it then names: commits called in an era that ended fail. */
  private era: Era = {};
  private planTail: Promise<unknown> = Promise.resolve();
  private writeTail: Promise<unknown> = Promise.resolve();
  /** Sources whose planned state is newer than their `rs!` key: the next checkpoint writes them. */
  private dirty = new Set<string>();
  private lastCheckpoint: number;
  /**
   * Durable source states that their `rs!` key may not hold yet (written by
   * a commit since the last durable checkpoint, or replayed at open). Bounded
   * by the sources of one checkpoint interval; it is what a source evicted
   * from the registry is read from before its `rs!` key.
   */
  readonly durableSources = new Map<string, SourceStatus>();
  /** The planned state of a source, also when the registry evicted it (see Registry). */
  private readonly sourceView = {
    get: (source: string): SourceStatus | undefined => this.registry.sources.get(source) ?? this.durableSources.get(source),
  };

  constructor(
    private readonly db: LevelDb,
    head: LevelHead,
    private readonly registry: Registry,
    private readonly opts: LevelWriterOptions,
  ) {
    this.durable = head;
    this.planned = head;
    this.lastCheckpoint = opts.clock();
  }

  /**
   * Brings the source registry up to the durable head after a crash: the
   * commits after the last checkpoint are counted again from their custody
   * records. Called once, at open, before the first commit.
   */
  async recover(): Promise<void> {
    const after = this.durable.sourcesAt ?? this.durable.commit;
    if (after >= this.durable.commit) return;
    const states = await this.opts.replaySources(after, this.durable.commit);
    for (const [source, state] of states) {
      this.durableSources.set(source, state);
      this.dirty.add(source);
    }
  }

  /** Writes the `rs!` keys that are behind (at close), so that the next open has nothing to replay. */
  checkpoint(): Promise<void> {
    return this.serial(async () => {
      if (this.dirty.size === 0 && (this.durable.sourcesAt ?? this.durable.commit) === this.durable.commit) return;
      const head: LevelHead = { ...this.durable, sourcesAt: this.durable.commit };
      const ops = sourcePuts(this.dirty, this.sourceView.get);
      ops.push(headPut(head));
      await writeOps(this.db, ops);
      this.durable = head;
      this.planned = head;
      this.dirty.clear();
      this.durableSources.clear();
    });
  }

  commit(batch: CommitBatch): Promise<CommitResult> {
    const era = this.era;
    const planned = this.planTail.then(() => this.plan(batch, era));
    this.planTail = planned.catch(() => undefined);
    return this.serial(async () => {
      const plan = await planned;
      this.assertCurrent(era);
      try {
        await writeOps(this.db, plan.ops);
      } catch (err) {
        this.fallBack({ write: 'commit', err });
        throw GatewayErrors.METEORZX_STORAGE_FAILED(`commit failed: ${(err as Error).message}`, { cause: err });
      }
      this.durable = plan.head;
      this.opts.written?.(batch);
      for (const [source, state] of plan.sources) this.durableSources.set(source, state);
      // A checkpoint's write holds every source state up to it, and writes land in order.
      if (plan.head.sourcesAt === plan.head.commit) this.durableSources.clear();
      return { custody: plan.records };
    });
  }

  /** Runs `fn` in the write order, after every write called before it. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writeTail.then(fn, fn);
    this.writeTail = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs `fn` alone (retention): after every commit called before it is
   * written, and before any called after it is planned, so the durable head
   * is the planned one. `fn` writes through `append`: operations of its own
   * with custody records chained onto the ledger, as one synced write — a
   * commit without events, numbered like any other.
   */
  exclusive<T>(fn: (append: AppendRecords) => Promise<T>): Promise<T> {
    const plansBefore = this.planTail;
    let release = (): void => undefined;
    // Registered in both queues now, synchronously: a commit called after this one is planned after it and written after it.
    this.planTail = new Promise<void>((resolve) => (release = resolve));
    return this.serial(async () => {
      try {
        await plansBefore;
        return await fn((build) => this.append(build));
      } finally {
        release();
      }
    });
  }

  private async append(build: (commit: number) => { ops: PutOp[]; custody: CustodyInput[] }): Promise<CustodyRecord[]> {
    const head = this.durable;
    const { ops, custody } = build(head.commit + 1);
    const plan = await planCommit({ events: [], custody, seqs: [] }, head, { epochs: this.registry.epochs, sources: this.sourceView }, {
      compressionLevel: this.opts.compressionLevel,
    });
    try {
      await writeOps(this.db, [...ops, ...plan.ops]);
    } catch (err) {
      // Nothing is planned on a retention write (commits called meanwhile wait to be planned after it), and it
      // leaves the registry as it was. Only an I/O error, after which LevelDB refuses every write on this handle
      // (the store reopens it), ends the era: the commits queued behind it then fail naming it, not the dead handle.
      if (isLevelIoError(err)) this.fallBack({ write: 'retention', err });
      throw GatewayErrors.METEORZX_STORAGE_FAILED(`retention write failed: ${(err as Error).message}`, { cause: err });
    }
    this.durable = plan.head;
    this.planned = plan.head;
    return plan.records;
  }

  /** Resolves when every call so far has settled. */
  async idle(): Promise<void> {
    await Promise.all([this.planTail, this.writeTail]);
  }

  private async plan(batch: CommitBatch, era: Era) {
    this.assertCurrent(era);
    await this.opts.load(batch);
    const now = this.opts.clock();
    const checkpoint = now - this.lastCheckpoint >= this.opts.checkpointMs ? this.dirty : undefined;
    const plan = await planCommit(batch, this.planned, { epochs: this.registry.epochs, sources: this.sourceView }, {
      compressionLevel: this.opts.compressionLevel,
      superseded: this.opts.superseded,
      checkpoint,
    });
    // A write failed while this was planned: it built on state that is gone, and must not become the base of the next.
    this.assertCurrent(era);
    this.planned = plan.head;
    const commit = plan.head.commit;
    for (const [k, v] of plan.epochs) this.registry.epochs.set(k, v, commit);
    for (const [k, v] of plan.sources) this.registry.sources.set(k, v, commit);
    // Here, between two plans: the entries the next plan loads are not evicted before it reads them.
    this.registry.epochs.trim(this.durable.commit);
    this.registry.sources.trim(this.durable.commit);
    if (checkpoint !== undefined) {
      this.dirty = new Set();
      this.lastCheckpoint = now;
    } else {
      for (const source of plan.sources.keys()) this.dirty.add(source);
    }
    return plan;
  }

  private assertCurrent(era: Era): void {
    const failed = era.endedBy;
    if (failed === undefined) return;
    const options = { cause: failed.err };
    if (failed.write === 'retention') {
      // Queued behind the retention batch, this commit was not planned yet: nothing of it was built on the failed write.
      throw GatewayErrors.METEORZX_STORAGE_FAILED(
        `the retention write before this commit failed (${(failed.err as Error).message}); nothing of this commit was written`,
        options,
      );
    }
    throw GatewayErrors.METEORZX_STORAGE_FAILED('an earlier commit failed, and this one was planned on top of it; nothing of it was written', options);
  }

  private fallBack(endedBy: NonNullable<Era['endedBy']>): void {
    this.era.endedBy = endedBy;
    this.era = {};
    this.planned = this.durable;
    // The caches hold states of commits that will now never be written; reload them from disk,
    // except the source states that are durable but not yet checkpointed (durableSources keeps them).
    this.registry.epochs.clear();
    this.registry.sources.clear();
    this.dirty = new Set(this.durableSources.keys());
  }
}

/**
 * One synced write through a chained batch: classic-level encodes each put
 * as it is added, about 5× cheaper per operation than `db.batch(array)`,
 * which clones and validates every operation object first.
 */
export async function writeOps(db: LevelDb, ops: readonly PutOp[]): Promise<void> {
  const batch = db.batch();
  try {
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value);
      else batch.del(op.key);
    }
  } catch (err) {
    await batch.close();
    throw err;
  }
  await batch.write({ sync: true });
}
