import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A corrupt store's replacement, recorded before its directory is moved
 * aside: `movedTo` is where it goes, `error` why. Moving it aside and
 * creating the new epoch with its gap event are two steps; a crash between
 * them (the repair of the moved copy can take seconds on a large buffer)
 * left no database at `buffer`, and the next start made a fresh epoch with
 * no gap event: the loss unrecorded. With this record the next start
 * finishes the replacement instead (see openStore).
 */
export interface PendingReplacement {
  movedTo: string;
  error: string;
}

const FILE = 'buffer.replacing';

export function journalPath(dataDir: string): string {
  return join(dataDir, FILE);
}

/** Writes the record and syncs it (file and directory) before the move it announces. */
export async function recordReplacement(dataDir: string, pending: PendingReplacement): Promise<void> {
  const fh = await open(journalPath(dataDir), 'w');
  try {
    await fh.writeFile(JSON.stringify(pending));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await syncDir(dataDir);
}

/** The record an interrupted replacement left; undefined when there is none (or it is unreadable: nothing was moved under it). */
export async function pendingReplacement(dataDir: string): Promise<PendingReplacement | undefined> {
  let text: string;
  try {
    text = await readFile(journalPath(dataDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as Partial<PendingReplacement>;
    if (typeof parsed.movedTo === 'string' && typeof parsed.error === 'string') return { movedTo: parsed.movedTo, error: parsed.error };
  } catch {
    // Cut by a crash while it was written: the rename it announces comes only after it is synced.
  }
  return undefined;
}

/** Removes the record once the new epoch (with its gap event) is durable. */
export async function clearReplacement(dataDir: string): Promise<void> {
  await rm(journalPath(dataDir), { force: true });
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the record's own sync is what a process crash needs.
  } finally {
    await fh.close();
  }
}
