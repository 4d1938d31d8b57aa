import type { CustodyInput } from '../types.js';
import type { EventBlock } from './block-codec.js';
import {
  blockKey,
  commitHex,
  custodyIdKey,
  EMPTY_VALUE,
  dayOf,
  decodePointer,
  idKey,
  indexKeys,
  LEGACY_RETENTION_KEY,
  parseCommitHex,
  parseIndexTail,
  retainedKey,
} from './keys.js';
import type { PutOp } from './level-commit.js';
import type { LevelContext } from './level-storage.js';
import type { AppendRecords } from './level-writer.js';
import { acceptedBefore } from './retention-proof.js';


/** Commits deleted per synced batch: bounds the memory one retention pass holds. */
const COMMITS_PER_BATCH = 256;
/** Day-index keys a retention pass reads at a time (LevelStorageOptions.retentionPageKeys). */
export const RETENTION_PAGE_KEYS = 10_000;

/**
 * Deletes the events of every whole UTC day that ended at or before
 * `before`: their blocks, index keys and dedup entries (each replaced by a
 * `ci!` key, so custody by id still finds the accepted record). The custody ledger
 * is append-only and stays; each batch of deletions is itself a commit that
 * appends a `retained` custody record (the commits, the horizon), and the
 * `r!` marker of each deleted block names that commit, so `verify` can tell
 * a deletion by retention from a block removed behind the gateway's back
 * (see retention-proof.ts). It reads beside ingest (old commits, which no
 * commit changes; but an id of theirs may be stored again meanwhile, which
 * `watch` tells); `append` writes each batch alone (LevelWriter.exclusive).
 * An event block that cannot be decoded is left as it is, with its keys, and
 * told to `damaged`: the pass goes on past it (one damaged block would
 * otherwise stop every pass there, and the store grow without bound), and
 * `verify` names it. Returns events deleted.
 */
export async function applyRetention(
  ctx: LevelContext,
  before: number,
  now: number,
  append: AppendRecords,
  watch: IdWatch,
  pageKeys = RETENTION_PAGE_KEYS,
  damaged?: (commit: number, err: unknown) => void,
): Promise<number> {
  const lastDay = dayOf(before);
  // Blocks belong to the day of their latest event: whole days before lastDay hold events received before its start.
  const horizon = Date.UTC(Number(lastDay.slice(0, 4)), Number(lastDay.slice(4, 6)) - 1, Number(lastDay.slice(6, 8)));
  const record = (from: number, to: number): CustodyInput => ({
    at: new Date(now).toISOString(),
    outcome: 'retained',
    method: 'retention',
    peer: 'gateway',
    from,
    to,
    before: new Date(horizon).toISOString(),
  });
  let deleted = 0;
  let ops: PutOp[] = [];
  let commits: number[] = [];
  /** Ids whose `id!` pointer was read pointing into a block of this batch, with that block's commit. */
  let ids: Array<{ id: string; commit: number }> = [];
  const flush = async (): Promise<void> => {
    if (commits.length === 0) return;
    const batch = { ops, commits, ids };
    ops = [];
    commits = [];
    ids = [];
    await append((commit) => {
      // Built under the writer: every commit written since the pointers were read has told `watch` its ids.
      for (const { id, commit: c } of batch.ids) {
        if (watch.storedAgain(id)) continue;
        // Custody by id finds an accepted record through its pointer: with the pointer gone, a `ci!` key leads to it (custody is kept).
        batch.ops.push({ type: 'del', key: idKey(id) }, { type: 'put', key: custodyIdKey(id, c), value: EMPTY_VALUE });
      }
      const marker = Buffer.from(commitHex(commit));
      for (const c of batch.commits) batch.ops.push({ type: 'put', key: retainedKey(c), value: marker });
      return { ops: batch.ops, custody: [record(Math.min(...batch.commits), Math.max(...batch.commits))] };
    });
    watch.clear();
    for (const c of batch.commits) ctx.forgetBlock(c);
  };

  const legacyDone = await adoptLegacyMarkers(ctx, horizon, async (commit) => {
    commits.push(commit);
    if (commits.length >= COMMITS_PER_BATCH) await flush();
  });
  await flush();
  if (legacyDone) await ctx.db.put(LEGACY_RETENTION_KEY, Buffer.alloc(0), { sync: true });

  // A page of index keys, then their deletion: deleting under a live iterator would be safe in LevelDB, but a
  // batch per page is simpler to reason about. Not all of them first: a store whose retention was cut from
  // 90d to 7d holds tens of millions (2,000,000 took 196 MB of heap at once). A key not due is passed over.
  for (let after = 'd!'; ; ) {
    const entries: Array<{ day: string; commit: number }> = [];
    for await (const key of ctx.db.keys({ gt: after, lt: `d!${lastDay}`, limit: pageKeys })) {
      entries.push(parseIndexTail(key));
      after = key;
    }
    if (entries.length === 0) break;
    for (const { day, commit } of entries) {
      // The ledger must agree that these events are due: an index key dated wrongly (or forged) deletes nothing.
      const records = await ctx.custodyBlock(commit).catch(() => undefined);
      if (records === undefined || !acceptedBefore(records, horizon)) continue;
      let block: EventBlock | undefined;
      try {
        block = await ctx.eventBlock(commit);
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'METEORZX_STORAGE_CORRUPT') throw err;
        damaged?.(commit, err);
        continue;
      }
      if (block !== undefined) {
        const sources = new Set(block.events.map((e) => e.source));
        const types = new Set(block.events.map((e) => e.type));
        for (const key of indexKeys(day, commit, sources, types)) ops.push({ type: 'del', key });
        const blockIds = block.events.map((e) => e.id);
        // Watched before the read: a commit storing one of them again is either seen by the read or told to `watch`.
        for (const id of blockIds) watch.add(id);
        const pointers = await ctx.db.getMany(blockIds.map(idKey));
        pointers.forEach((value, i) => {
          // A later commit may have stored the id again after its dedup window: keep that pointer.
          if (value !== undefined && decodePointer(value.toString())?.commit === commit) ids.push({ id: blockIds[i] as string, commit });
        });
        deleted += block.events.length;
      } else {
        for (const key of indexKeys(day, commit, [], [])) ops.push({ type: 'del', key });
      }
      ops.push({ type: 'del', key: blockKey(commit) });
      commits.push(commit);
      if (commits.length >= COMMITS_PER_BATCH) await flush();
    }
  }
  await flush();
  return deleted;
}

/**
 * Stores written before retention was recorded in the ledger hold `r!`
 * markers with an empty value, which prove nothing. Each one whose commit's
 * events were all received before `horizon` is adopted (`adopt`) by a
 * `retained` record of this pass: events this pass would delete anyway if
 * they were still there, so adopting a forged marker loses nothing the
 * retention policy keeps. Others stay empty (`verify` names them) and are
 * looked at again by the next pass, until none is left. Returns true when
 * this pass leaves none (once its adoptions are written, no later pass needs to look).
 */
async function adoptLegacyMarkers(ctx: LevelContext, horizon: number, adopt: (commit: number) => Promise<void>): Promise<boolean> {
  if ((await ctx.db.get(LEGACY_RETENTION_KEY)) !== undefined) return false;
  let left = 0;
  for await (const [key, value] of ctx.db.iterator({ gt: 'r!', lt: 'r"' })) {
    if (value.length !== 0) continue;
    const commit = parseCommitHex(key.slice(2));
    // A block still there is deleted (and its marker rewritten) in its turn, when its day is due.
    if ((await ctx.db.get(blockKey(commit))) !== undefined) continue;
    const records = await ctx.custodyBlock(commit).catch(() => undefined);
    if (records !== undefined && acceptedBefore(records, horizon)) await adopt(commit);
    else left += 1;
  }
  return left === 0;
}

/**
 * The ids whose `id!` pointers a retention batch read, beside ingest, to
 * delete them with the blocks they point into; and which of those a commit
 * written since has stored again (an agent replaying an event whose first
 * copy aged out): its pointer now leads to the new copy, and the batch,
 * written later, must not delete it. LevelStorage tells every watch the ids
 * of each commit it writes (`written`), while one is open.
 */
export class IdWatch {
  private readonly watched = new Set<string>();
  private readonly stored = new Set<string>();

  add(id: string): void {
    this.watched.add(id);
  }

  /** Called with the events of each commit once it is written. */
  written(events: readonly { id: string }[]): void {
    if (this.watched.size === 0) return;
    for (const e of events) if (this.watched.has(e.id)) this.stored.add(e.id);
  }

  storedAgain(id: string): boolean {
    return this.stored.has(id);
  }

  /** Once a batch is written: its ids need no watching any more. */
  clear(): void {
    this.watched.clear();
    this.stored.clear();
  }
}
