import type { SourceStatus } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';
import type { EpochState } from '../seq-gaps.js';
import type { CommitBatch, CommitResult } from '../types.js';
import { planCommit, type LevelHead, type PutOp } from './level-commit.js';
import type { LevelDb } from './level-storage.js';

/** Registry states as of the last planned commit (speculative: ahead of the disk while writes are in flight). */
export interface RegistryCache {
  epochs: Map<string, EpochState>;
  sources: Map<string, SourceStatus>;
}

export interface LevelWriterOptions {
  compressionLevel: number;
  /** Loads into the cache the registry entries a batch touches that it does not hold yet (from disk). */
  load: (batch: CommitBatch) => Promise<void>;
  /** See planCommit: the earlier commit of an id accepted again after its dedup window. */
  superseded?: (id: string) => number | undefined;
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
 * what is durable, and commits called afterwards proceed normally.
 */
export class LevelWriter {
  private durable: LevelHead;
  private planned: LevelHead;
  /** Bumped by every failed write: commits called under an older generation fail. */
  private generation = 0;
  private planTail: Promise<unknown> = Promise.resolve();
  private writeTail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: LevelDb,
    head: LevelHead,
    private readonly registry: RegistryCache,
    private readonly opts: LevelWriterOptions,
  ) {
    this.durable = head;
    this.planned = head;
  }

  commit(batch: CommitBatch): Promise<CommitResult> {
    const generation = this.generation;
    const planned = this.planTail.then(() => this.plan(batch, generation));
    this.planTail = planned.catch(() => undefined);
    return this.serial(async () => {
      const plan = await planned;
      this.assertCurrent(generation);
      try {
        await writeOps(this.db, plan.ops);
      } catch (err) {
        this.fallBack();
        throw GatewayErrors.METEORZX_STORAGE_FAILED(`commit failed: ${(err as Error).message}`, { cause: err });
      }
      this.durable = plan.head;
      return { custody: plan.records };
    });
  }

  /** Runs `fn` in the write order (retention), after every write called before it. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writeTail.then(fn, fn);
    this.writeTail = run.catch(() => undefined);
    return run;
  }

  /** Resolves when every call so far has settled. */
  async idle(): Promise<void> {
    await Promise.all([this.planTail, this.writeTail]);
  }

  private async plan(batch: CommitBatch, generation: number) {
    this.assertCurrent(generation);
    await this.opts.load(batch);
    const plan = await planCommit(batch, this.planned, this.registry, this.opts.compressionLevel, this.opts.superseded);
    // A write failed while this was planned: it built on state that is gone, and must not become the base of the next.
    this.assertCurrent(generation);
    this.planned = plan.head;
    for (const [k, v] of plan.epochs) this.registry.epochs.set(k, v);
    for (const [k, v] of plan.sources) this.registry.sources.set(k, v);
    return plan;
  }

  private assertCurrent(generation: number): void {
    if (generation !== this.generation) {
      throw GatewayErrors.METEORZX_STORAGE_FAILED('an earlier commit failed, and this one was planned on top of it; nothing of it was written');
    }
  }

  private fallBack(): void {
    this.generation += 1;
    this.planned = this.durable;
    // The caches hold states of commits that will now never be written; reload them from disk.
    this.registry.epochs.clear();
    this.registry.sources.clear();
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
