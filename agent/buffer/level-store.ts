import { ClassicLevel } from 'classic-level';
import { copyFile, link, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { causeChain } from '../../common/level-errors.js';
import { makeDir } from '../../common/make-dir.js';
import { AgentErrors } from '../errors.js';
import { BLOCK_END, BLOCK_PREFIX, blockKey, blockSeq, META, META_KEYS } from './keys.js';
import { decodeBlock, readBlockMeta, type BlockMeta } from './block-codec.js';
import type { ResolvedBufferOptions } from './options.js';
import { clearJournal, recordJournal } from './recovery-journal.js';

export type BufferDb = ClassicLevel<string, Buffer>;

/** The cursors a restart resumes from: read from keys, never counted (DESIGN §3.6). */
export interface StoredMeta {
  epoch: string;
  head: number;
  lastHash: string | undefined;
  delivered: number;
  oldest: number;
  bufferedBytes: number;
}

export async function openLevel(location: string, caps: ResolvedBufferOptions['level']): Promise<BufferDb> {
  await makeDir(location);
  const db = new ClassicLevel<string, Buffer>(location, {
    keyEncoding: 'utf8',
    valueEncoding: 'buffer',
    // Blocks are already deflated: Snappy would only burn compaction CPU.
    compression: false,
    maxOpenFiles: caps.maxOpenFiles,
    cacheSize: caps.cacheSize,
    writeBufferSize: caps.writeBufferSize,
  });
  await db.open();
  return db;
}

function corrupt(message: string): Error {
  return AgentErrors.METEORZX_BUFFER_CORRUPT(message);
}

function intMeta(name: string, value: Buffer | undefined, min: number): number {
  const n = value === undefined ? Number.NaN : Number(value.toString('utf8'));
  if (!Number.isSafeInteger(n) || n < min) throw corrupt(`meta key ${name} is missing or not an integer ≥ ${min}`);
  return n;
}

/** Reads the meta keys; undefined for a fresh database. Throws METEORZX_BUFFER_CORRUPT when they do not agree. */
export async function readMeta(db: BufferDb): Promise<StoredMeta | undefined> {
  const values = await db.getMany([...META_KEYS]);
  const byKey = new Map(META_KEYS.map((key, i) => [key, values[i]]));
  const epoch = byKey.get(META.epoch)?.toString('utf8');
  if (epoch === undefined) {
    if (values.some((v) => v !== undefined)) throw corrupt('meta keys present without m!epoch');
    return undefined;
  }
  const head = intMeta(META.head, byKey.get(META.head), 0);
  const meta: StoredMeta = {
    epoch,
    head,
    lastHash: byKey.get(META.lastHash)?.toString('utf8') || undefined,
    delivered: intMeta(META.delivered, byKey.get(META.delivered), 0),
    oldest: intMeta(META.oldest, byKey.get(META.oldest), 1),
    bufferedBytes: intMeta(META.bufferedBytes, byKey.get(META.bufferedBytes), 0),
  };
  if (meta.delivered > head || meta.oldest > head + 1 || (head > 0) !== (meta.lastHash !== undefined)) {
    throw corrupt(`meta keys disagree: head ${head}, delivered ${meta.delivered}, oldest ${meta.oldest}`);
  }
  return meta;
}

/** The oldest stored block: one seek, so restarts stay O(1) in the buffered count. */
export async function firstBlock(db: BufferDb, from = 1): Promise<BlockMeta | undefined> {
  for await (const [key, value] of db.iterator({ gte: blockKey(from), lt: BLOCK_END, limit: 1 })) {
    return readBlockMeta(blockSeq(key), value);
  }
  return undefined;
}

/**
 * Checks at open that the newest block decodes and ends where the meta keys
 * say the chain ends, so a damaged table holding recent data is found before
 * anything is appended on top of it. One seek, one inflate.
 */
export async function checkHead(db: BufferDb, meta: StoredMeta): Promise<void> {
  if (meta.head === 0 || meta.oldest > meta.head) return;
  for await (const [key, value] of db.iterator({ lte: blockKey(meta.head), gte: BLOCK_PREFIX, reverse: true, limit: 1 })) {
    const events = decodeBlock(blockSeq(key), value);
    const last = events[events.length - 1];
    if (last?.seq !== meta.head || last.hash !== meta.lastHash) {
      throw corrupt(`newest block ends at seq ${last?.seq ?? '?'}, meta says head ${meta.head}`);
    }
    return;
  }
  throw corrupt(`no block holds head seq ${meta.head}`);
}

/** True when an error (or any cause under it) reports a damaged database. */
export function isCorruption(err: unknown): boolean {
  return causeChain(err).some((e) => {
    const code = (e as { code?: unknown }).code;
    if (code === 'LEVEL_CORRUPTION' || code === 'METEORZX_BUFFER_CORRUPT' || code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') return true;
    // A block that inflates to garbage fails in JSON.parse (a SyntaxError) or in decodeBlock's own checks.
    return e instanceof SyntaxError || /corrupt|bad magic|checksum mismatch|unknown format|does not match its header/i.test(e.message);
  });
}

/**
 * Finds a free `<dataDir>/buffer.corrupt-<timestamp>[-n]` name and hands it to
 * `claim`, which fails with EEXIST or ENOTEMPTY when the name is taken.
 */
async function claimAside(dataDir: string, now: number, claim: (target: string) => Promise<void>): Promise<string> {
  const stamp = new Date(now).toISOString().replace(/[:.]/g, '-');
  let target = join(dataDir, `buffer.corrupt-${stamp}`);
  for (let n = 1; ; n++) {
    try {
      await claim(target);
      return target;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      target = join(dataDir, `buffer.corrupt-${stamp}-${n}`);
    }
  }
}

/**
 * Moves a damaged database out of the way, never deleting it: it is the
 * evidence. `before` runs with the chosen name just before the move (the
 * replacement's record, see recovery-journal.ts).
 */
export function moveAside(dataDir: string, location: string, now: number, before?: (target: string) => Promise<void>): Promise<string> {
  return claimAside(dataDir, now, async (target) => {
    await before?.(target);
    await rename(location, target);
  });
}

/**
 * Repairs a closed database in place with LevelDB's repair, which keeps every
 * entry it can still read and writes a damaged table's readable entries over
 * the table. First every file is hard-linked (copied where links fail) into a
 * `buffer.corrupt-*` directory beside it: LevelDB never rewrites a file in
 * place, so that directory keeps the damaged bytes — the evidence — at the
 * cost of directory entries. Resolves with that directory.
 *
 * The repair is not atomic: it moves the write-ahead log aside before it
 * writes the MANIFEST naming the table the log became. So it runs under a
 * `buffer.repairing` record (recovery-journal.ts): a crash during it, or a
 * repair that fails, puts the kept files back (restoreFiles), never leaving
 * a store that opens without the log's acknowledged writes.
 */
export async function repairInPlace(dataDir: string, location: string, now: number): Promise<string> {
  const kept = await claimAside(dataDir, now, async (target) => {
    await mkdir(target);
  });
  for (const entry of await readdir(location, { withFileTypes: true })) {
    if (!entry.isFile() || entry.name === 'LOCK') continue;
    await linkOrCopy(join(location, entry.name), join(kept, entry.name));
  }
  // Absolute: the next start may run from another working directory.
  await recordJournal(dataDir, 'buffer.repairing', { kept: resolve(kept) });
  try {
    await ClassicLevel.repair(location);
  } catch (err) {
    await restoreFiles(kept, location);
    await clearJournal(dataDir, 'buffer.repairing');
    throw err;
  }
  await clearJournal(dataDir, 'buffer.repairing');
  return kept;
}

/** Makes `location` hold exactly the files kept in `kept` (before a repair), linked like repairInPlace linked them. */
export async function restoreFiles(kept: string, location: string): Promise<void> {
  await rm(location, { recursive: true, force: true });
  await mkdir(location);
  for (const entry of await readdir(kept, { withFileTypes: true })) {
    if (entry.isFile()) await linkOrCopy(join(kept, entry.name), join(location, entry.name));
  }
}

function linkOrCopy(from: string, to: string): Promise<void> {
  return link(from, to).catch(() => copyFile(from, to));
}

/**
 * Best effort: what did the damaged epoch hold? LevelDB's repair rebuilds the
 * MANIFEST from the table files (moving unreadable ones into `lost/` inside
 * the same directory), then the meta keys are read. Undefined when even that fails.
 */
export async function salvageMeta(dir: string, caps: ResolvedBufferOptions['level']): Promise<Partial<StoredMeta> | undefined> {
  try {
    await ClassicLevel.repair(dir);
    const db = await openLevel(dir, caps);
    try {
      const values = await db.getMany([...META_KEYS]);
      const text = (i: number): string | undefined => values[i]?.toString('utf8');
      const num = (i: number): number | undefined => {
        const n = Number(text(i));
        return text(i) === undefined || !Number.isSafeInteger(n) ? undefined : n;
      };
      return { epoch: text(0), head: num(1), delivered: num(3), oldest: num(4) };
    } finally {
      await db.close();
    }
  } catch {
    return undefined;
  }
}
