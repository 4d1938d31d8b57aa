import { levelMessage } from '../../common/level-errors.js';
import { newId } from '../../protocols/index.js';
import { AgentErrors } from '../errors.js';
import { META } from './keys.js';
import {
  checkHead,
  isCorruption,
  moveAside,
  openLevel,
  readMeta,
  salvageMeta,
  type BufferDb,
  type StoredMeta,
} from './level-store.js';
import type { ResolvedBufferOptions } from './options.js';

export interface OpenedStore {
  db: BufferDb;
  meta: StoredMeta;
  /** Set when a corrupt store was moved aside: what to say in the gap event and in state().recovered. */
  lost?: { message: string; data: { reason: 'buffer-corrupt' } & Record<string, unknown> };
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

async function initialise(db: BufferDb): Promise<StoredMeta> {
  // A new epoch: ULIDs are random enough that two buffer lives never share one.
  const meta: StoredMeta = { epoch: newId(), head: 0, lastHash: undefined, delivered: 0, oldest: 1, bufferedBytes: 0 };
  const put = (key: string, value: string | number) => ({ type: 'put' as const, key, value: Buffer.from(String(value)) });
  await db.batch(
    [put(META.epoch, meta.epoch), put(META.head, 0), put(META.lastHash, ''), put(META.delivered, 0), put(META.oldest, 1), put(META.bufferedBytes, 0)],
    { sync: true },
  );
  return meta;
}

/**
 * Opens the buffer database and reads its cursors. A corrupt database is
 * replaced (replaceStore): the agent keeps accepting events, and the loss is
 * reported as a gap.
 */
export async function openStore(opts: ResolvedBufferOptions, location: string): Promise<OpenedStore> {
  let opened: { db: BufferDb; meta: StoredMeta | undefined };
  try {
    opened = await tryOpen(opts, location);
  } catch (err) {
    if (!isCorruption(err)) {
      throw AgentErrors.METEORZX_BUFFER_OPEN_FAILED(`cannot open the buffer at ${location}: ${levelMessage(err)}`, { cause: err });
    }
    return replaceStore(opts, location, err);
  }
  const meta = opened.meta ?? (await initialise(opened.db));
  return { db: opened.db, meta };
}

/**
 * Replaces a corrupt, closed database: it is moved aside (never deleted), its
 * cursors salvaged where LevelDB's repair can still read them, and a fresh
 * database with a new epoch takes its place.
 */
export async function replaceStore(opts: ResolvedBufferOptions, location: string, err: unknown): Promise<OpenedStore> {
  const movedTo = await moveAside(opts.dataDir, location, opts.clock.now());
  const old = await salvageMeta(movedTo, opts.level);
  const db = await openLevel(location, opts.level);
  const meta = await initialise(db);
  const from = old?.delivered !== undefined ? old.delivered + 1 : undefined;
  const to = old?.head;
  const known = from !== undefined && to !== undefined && to >= from;
  const data = {
    reason: 'buffer-corrupt' as const,
    lostEpoch: old?.epoch ?? null,
    // The undelivered range of the lost epoch, when the damaged store still told us.
    from: known ? from : null,
    to: known ? to : null,
    count: known ? to - from + 1 : null,
    movedTo,
    error: (err as Error).message,
  };
  const message =
    `buffer was corrupt (${(err as Error).message}); moved to ${movedTo}, new epoch ${meta.epoch}` +
    (known ? `, lost undelivered seq ${from}-${to} of epoch ${old?.epoch}` : ', lost range unknown');
  opts.logger?.error({ err, movedTo, lostEpoch: data.lostEpoch, from: data.from, to: data.to }, `buffer: ${message}`);
  return { db, meta, lost: { message, data } };
}
