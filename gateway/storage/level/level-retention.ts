import { dayOf, blockKey, decodePointer, idKey, indexKeys, parseIndexTail, retainedKey } from './keys.js';
import type { PutOp } from './level-commit.js';
import type { LevelContext } from './level-storage.js';

/** Commits deleted per synced batch: bounds the memory one retention pass holds. */
const COMMITS_PER_BATCH = 256;

/**
 * Deletes the events of every whole UTC day that ended at or before
 * `before`: their blocks, index keys and dedup entries. The custody ledger
 * is append-only and stays; a marker per deleted block tells `verify` the
 * events are gone by retention, not by tampering. Returns events deleted.
 */
export async function applyRetention(ctx: LevelContext, before: number): Promise<number> {
  const lastDay = dayOf(before);
  let deleted = 0;
  let ops: PutOp[] = [];
  let commits: number[] = [];
  const flush = async (): Promise<void> => {
    if (ops.length === 0) return;
    await ctx.db.batch(ops, { sync: true });
    for (const c of commits) ctx.forgetBlock(c);
    ops = [];
    commits = [];
  };
  // Collect first, then delete: deleting under a live iterator would be safe in LevelDB, but a batch per chunk is simpler to reason about.
  const entries: Array<{ day: string; commit: number }> = [];
  for await (const key of ctx.db.keys({ gt: 'd!', lt: `d!${lastDay}` })) entries.push(parseIndexTail(key));
  for (const { day, commit } of entries) {
    const block = await ctx.eventBlock(commit);
    if (block !== undefined) {
      const sources = new Set(block.events.map((e) => e.source));
      const types = new Set(block.events.map((e) => e.type));
      for (const key of indexKeys(day, commit, sources, types)) ops.push({ type: 'del', key });
      const ids = block.events.map((e) => e.id);
      const pointers = await ctx.db.getMany(ids.map(idKey));
      pointers.forEach((value, i) => {
        // A later commit may have stored the id again after its dedup window: keep that pointer.
        if (value !== undefined && decodePointer(value.toString())?.commit === commit) ops.push({ type: 'del', key: idKey(ids[i] as string) });
      });
      deleted += block.events.length;
    } else {
      for (const key of indexKeys(day, commit, [], [])) ops.push({ type: 'del', key });
    }
    ops.push({ type: 'del', key: blockKey(commit) });
    ops.push({ type: 'put', key: retainedKey(commit), value: Buffer.alloc(0) });
    commits.push(commit);
    if (commits.length >= COMMITS_PER_BATCH) await flush();
  }
  await flush();
  return deleted;
}
