import { isLevelIoError } from '../../common/level-errors.js';
import { BLOCK_PREFIX, blockKey } from './keys.js';
import { isCorruption, repairInPlace } from './level-store.js';
import { openStore, replaceStore, type OpenedStore } from './open-store.js';
import type { ResolvedBufferOptions } from './options.js';

/**
 * A write that LevelDB refused for good: once a write, or a background flush
 * or compaction, fails, LevelDB refuses every later write on that handle,
 * even after the cause is gone. `corrupt`: a compaction met a damaged table
 * (and the reopened database would schedule the same compaction). `io`: the
 * disk failed or was full.
 */
export class RefusedWrite extends Error {
  constructor(
    readonly kind: 'corrupt' | 'io',
    cause: unknown,
  ) {
    super((cause as Error).message, { cause });
  }
}

/** A RefusedWrite for what LevelDB refuses for good; any other error as it is. */
export function refusedWrite(err: unknown): unknown {
  return isCorruption(err) ? new RefusedWrite('corrupt', err) : isLevelIoError(err) ? new RefusedWrite('io', err) : err;
}

/**
 * How a closed store is opened again after a refused write:
 * - `reopen`, after an I/O error (a full disk, most likely): nothing is wrong
 *   with the data, and a new handle writes once there is room again.
 * - `repair`, after corruption: repaired in place (repairInPlace: the damaged
 *   files are kept aside, every entry LevelDB can still read stays, the epoch
 *   and cursors with it). Blocks lost with the damage are then met by reads
 *   as missing, and become holes with `buffer-corrupt` gaps like any damage
 *   found by reading.
 * - `replace`, for a store a repair did not mend: moved aside, new epoch, as
 *   at open.
 */
export type Recovery = 'reopen' | 'repair' | 'replace';

const REPAIR_AGAIN_AFTER_MS = 10 * 60_000;

/**
 * What to try, in order, after a refused write (each is followed by the
 * write again). A store repaired in place a short while ago that fails again
 * is replaced at once: a repair that did not mend it is not run in a loop.
 */
export function recoveries(refused: RefusedWrite, repairedAt: number | undefined, now: number): readonly Recovery[] {
  if (refused.kind === 'io') return ['reopen'];
  // A clock now behind the repair's time went back since: how long ago it was is not known. Taken for
  // recent, the store was replaced (its undelivered events lost) where one more repair keeps them; a
  // repair that does not mend it is followed by the replacement all the same.
  const sinceRepair = repairedAt === undefined ? Number.POSITIVE_INFINITY : now - repairedAt;
  return sinceRepair >= 0 && sinceRepair < REPAIR_AGAIN_AFTER_MS ? ['replace'] : ['repair', 'replace'];
}

/**
 * Opens the closed store at `location` again the way `how` says. Resolves
 * with it and a sentence for the log (and, after a repair, for
 * `state().recovered`); `opened.lost` is set when a new epoch began.
 */
export async function reopenStore(
  opts: ResolvedBufferOptions,
  location: string,
  how: Recovery,
  refused: RefusedWrite,
): Promise<{ opened: OpenedStore; said: string }> {
  if (how === 'replace') {
    const opened = await replaceStore(opts, location, refused.cause);
    return { opened, said: opened.lost?.message ?? '' };
  }
  if (how === 'reopen') {
    return { opened: await openStore(opts, location), said: `buffer writes failed (${refused.message}); the database was reopened` };
  }
  let repaired: string;
  try {
    repaired = `repaired in place, damaged files kept in ${await repairInPlace(opts.dataDir, location, opts.clock.now())}`;
  } catch (repairErr) {
    repaired = `the repair failed (${(repairErr as Error).message})`;
  }
  const opened = await openStore(opts, location);
  // A block deleted before `oldest` comes back when its delete was in the damaged table: no read or
  // sweep would ever look there again, so it goes now. Best effort: a store whose compaction already
  // failed again refuses this write, and then the retried commit too, which replaces the store.
  if (opened.lost === undefined) await opened.db.clear({ gte: BLOCK_PREFIX, lt: blockKey(opened.meta.oldest) }).catch(() => undefined);
  return { opened, said: `buffer writes failed as corrupt (${refused.message}): LevelDB's compaction met a damaged table; ${repaired}` };
}
