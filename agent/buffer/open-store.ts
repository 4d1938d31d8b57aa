import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { isLevelLocked, levelMessage } from '../../common/level-errors.js';
import { newId } from '../../protocols/index.js';
import { AgentErrors } from '../errors.js';
import { encodeBlock } from './block-codec.js';
import { ChainCursor } from './chain-cursor.js';
import type { BatchOp } from './commit-plan.js';
import { blockKey, META } from './keys.js';
import {
  checkHead,
  isCorruption,
  moveAside,
  openLevel,
  readMeta,
  restoreFiles,
  salvageMeta,
  type BufferDb,
  type StoredMeta,
} from './level-store.js';
import type { ResolvedBufferOptions } from './options.js';
import { clearJournal, readJournal, recordJournal } from './recovery-journal.js';
import { gapEvent } from './space-plan.js';

export interface OpenedStore {
  db: BufferDb;
  meta: StoredMeta;
  /** Set when a corrupt store was moved aside (the new epoch's first event is its gap): what state().recovered says. */
  lost?: { message: string };
}

async function tryOpen(opts: ResolvedBufferOptions, location: string): Promise<{ db: BufferDb; meta: StoredMeta | undefined }> {
  const db = await openLevel(location, opts.level);
  try {
    const meta = await readMeta(db);
    if (meta !== undefined) await checkHead(db, meta);
    return { db, meta };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Writes a new epoch's meta keys in one synced batch. A replaced store's gap
 * event is chained into that batch as the epoch's first block: written in a
 * later commit, a crash between the two left a sound empty store and the
 * loss unrecorded (DESIGN §3.4).
 */
async function initialise(db: BufferDb, opts: ResolvedBufferOptions, gap?: Parameters<typeof gapEvent>[0]): Promise<StoredMeta> {
  // A new epoch: ULIDs are random enough that two buffer lives never share one.
  const epoch = newId();
  const cursor = new ChainCursor({ agent: opts.id, epoch, head: 0, lastHash: undefined });
  const ops: BatchOp[] = [];
  if (gap !== undefined) {
    const now = opts.clock.now();
    cursor.push(gapEvent(gap), new Date(now).toISOString(), now);
    ops.push({ type: 'put', key: blockKey(1), value: encodeBlock(cursor.lines, now, true) });
  }
  const bufferedBytes = ops.reduce((n, op) => n + (op.type === 'put' ? op.value.length : 0), 0);
  const meta: StoredMeta = { epoch, head: cursor.head, lastHash: cursor.lastHash, delivered: 0, oldest: 1, bufferedBytes };
  const put = (key: string, value: string | number): BatchOp => ({ type: 'put', key, value: Buffer.from(String(value)) });
  ops.push(
    put(META.epoch, epoch),
    put(META.head, meta.head),
    put(META.lastHash, meta.lastHash ?? ''),
    put(META.delivered, 0),
    put(META.oldest, 1),
    put(META.bufferedBytes, bufferedBytes),
    put(META.agent, opts.id),
  );
  await db.batch(ops, { sync: true });
  return meta;
}

/**
 * An epoch's chain is (agent id, epoch): when the configured id is not the
 * one the epoch's events were chained under (a host renamed, the default id
 * being the host name), the events from here on form the chain of a new
 * (agent, epoch) that starts past seq 1, and the gateway saw a hole 1..head
 * in it — a `seq-gap` alert, then backfill recording as lost events that
 * were stored, under the old id. So the first event under the new id is a
 * gap event naming 1..head, reason `agent-renamed`, with the old id
 * (`renamedFrom`): the gateway marks that hole reported by the agent, and
 * the old id's events keep their own chain (their stored lines name it).
 * Written with the new id in one synced batch. A store from before this key
 * takes the configured id as its own.
 */
async function continueUnderId(db: BufferDb, opts: ResolvedBufferOptions, meta: StoredMeta): Promise<StoredMeta> {
  const stored = (await db.get(META.agent))?.toString('utf8');
  if (stored === opts.id) return meta;
  const put = (key: string, value: string | number): BatchOp => ({ type: 'put', key, value: Buffer.from(String(value)) });
  if (stored === undefined || meta.head === 0) {
    await db.batch([put(META.agent, opts.id)], { sync: true });
    return meta;
  }
  const now = opts.clock.now();
  const cursor = new ChainCursor({ agent: opts.id, epoch: meta.epoch, head: meta.head, lastHash: meta.lastHash });
  cursor.push(gapEvent({ reason: 'agent-renamed', from: 1, to: meta.head, count: meta.head, renamedFrom: stored }), new Date(now).toISOString(), now);
  const block = encodeBlock(cursor.lines, now, true);
  const next: StoredMeta = { ...meta, head: cursor.head, lastHash: cursor.lastHash, bufferedBytes: meta.bufferedBytes + block.length };
  await db.batch(
    [
      { type: 'put', key: blockKey(meta.head + 1), value: block },
      put(META.head, next.head),
      put(META.lastHash, next.lastHash ?? ''),
      put(META.bufferedBytes, next.bufferedBytes),
      put(META.agent, opts.id),
    ],
    { sync: true },
  );
  opts.logger?.warn({ from: stored, to: opts.id, epoch: meta.epoch, seqs: `1..${meta.head}` }, `buffer: the agent id changed from ${stored} to ${opts.id}; epoch ${meta.epoch} goes on under the new id from seq ${next.head}, after a gap event naming seqs 1..${meta.head} (sent as ${stored})`);
  return next;
}

/**
 * Opens the buffer database and reads its cursors. A corrupt database is
 * replaced (replaceStore): the agent keeps accepting events, and the loss is
 * reported as a gap. What a crash left of a recovery is dealt with first
 * (recovery-journal.ts): an in-place repair it interrupted is undone, and a
 * replacement it interrupted after the damaged store was moved aside,
 * before the new epoch was written, is finished.
 */
export async function openStore(opts: ResolvedBufferOptions, location: string): Promise<OpenedStore> {
  await undoInterruptedRepair(opts, location);
  const replacing = await readJournal(opts.dataDir, 'buffer.replacing');
  let opened: { db: BufferDb; meta: StoredMeta | undefined };
  try {
    opened = await tryOpen(opts, location);
  } catch (err) {
    if (!isCorruption(err)) {
      const why = isLevelLocked(err) ? 'another process has it open (an agent already running with this data dir?)' : levelMessage(err);
      throw AgentErrors.METEORZX_BUFFER_OPEN_FAILED(`cannot open the buffer at ${location}: ${why}`, { cause: err });
    }
    return replaceStore(opts, location, err);
  }
  if (replacing !== undefined) {
    const movedTo = replacing.movedTo;
    // No epoch at `buffer` and the damaged store moved aside: the crash came between the two steps.
    if (opened.meta === undefined && movedTo !== undefined && (await isDir(movedTo))) {
      const pending = { movedTo, error: replacing.error ?? 'unknown' };
      return startAfterLoss(opts, opened.db, pending, await salvageMeta(movedTo, opts.level));
    }
    // The new epoch, with its gap event, was written (or the move never happened): nothing to finish.
    await clearJournal(opts.dataDir, 'buffer.replacing');
  }
  const meta = opened.meta === undefined ? await initialise(opened.db, opts) : await continueUnderId(opened.db, opts, opened.meta);
  return { db: opened.db, meta };
}

/**
 * Replaces a corrupt, closed database: it is moved aside (never deleted), its
 * cursors salvaged where LevelDB's repair can still read them, and a fresh
 * database with a new epoch takes its place, its first event the
 * `buffer-corrupt` gap naming what was lost. The move is recorded first
 * (recovery-journal.ts), so a crash before the new epoch is written is
 * finished by the next open instead of leaving an epoch with no gap event.
 */
export async function replaceStore(opts: ResolvedBufferOptions, location: string, err: unknown): Promise<OpenedStore> {
  const error = (err as Error).message;
  const movedTo = await moveAside(opts.dataDir, location, opts.clock.now(), (target) => recordJournal(opts.dataDir, 'buffer.replacing', { movedTo: resolve(target), error }));
  const old = await salvageMeta(movedTo, opts.level);
  const db = await openLevel(location, opts.level);
  return startAfterLoss(opts, db, { movedTo, error }, old, err);
}

/** Writes the new epoch on an empty database, its first event the gap naming what the moved-aside store lost (`old`: its salvaged cursors). */
async function startAfterLoss(
  opts: ResolvedBufferOptions,
  db: BufferDb,
  { movedTo, error }: PendingReplacement,
  old: Partial<StoredMeta> | undefined,
  err?: unknown,
): Promise<OpenedStore> {
  const from = old?.delivered !== undefined ? old.delivered + 1 : undefined;
  const to = old?.head;
  const known = from !== undefined && to !== undefined && to >= from;
  const gap = {
    reason: 'buffer-corrupt' as const,
    lostEpoch: old?.epoch ?? null,
    // The undelivered range of the lost epoch, when the damaged store still told us.
    from: known ? from : null,
    to: known ? to : null,
    count: known ? to - from + 1 : null,
    movedTo,
    error,
  };
  let meta: StoredMeta;
  try {
    meta = await initialise(db, opts, gap);
  } catch (initErr) {
    await db.close().catch(() => undefined);
    throw initErr;
  }
  await clearJournal(opts.dataDir, 'buffer.replacing').catch(() => undefined);
  const message =
    `buffer was corrupt (${error}); moved to ${movedTo}, new epoch ${meta.epoch}` +
    (known ? `, lost undelivered seq ${from}-${to} of epoch ${old?.epoch}` : ', lost range unknown');
  opts.logger?.error({ err: err ?? error, movedTo, lostEpoch: gap.lostEpoch, from: gap.from, to: gap.to }, `buffer: ${message}`);
  return { db, meta, lost: { message } };
}

/** The files of a corrupt store, and why it is being replaced (recorded as `buffer.replacing`). */
interface PendingReplacement {
  movedTo: string;
  error: string;
}

/**
 * An in-place repair a crash interrupted (its `buffer.repairing` record is
 * there) may have moved the write-ahead log aside without writing the
 * MANIFEST that names what it became: opened so, the store loses the log's
 * writes. Its files as they were before the repair are in the directory the
 * repair kept them in: they are put back, and the damage is met (and the
 * store repaired) again.
 */
async function undoInterruptedRepair(opts: ResolvedBufferOptions, location: string): Promise<void> {
  const pending = await readJournal(opts.dataDir, 'buffer.repairing');
  if (pending === undefined) return;
  const kept = pending.kept;
  if (kept !== undefined && (await isDir(kept))) {
    await restoreFiles(kept, location);
    opts.logger?.warn({ kept }, 'buffer: an in-place repair was interrupted; the store is back as it was before it, from the files kept for it');
  }
  await clearJournal(opts.dataDir, 'buffer.repairing');
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}
