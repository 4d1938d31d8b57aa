import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Records of a store recovery in progress, written (and synced) in the data
 * directory before the step a crash must not leave half done, and deleted
 * once it is done. The next open finds a record a crash left and finishes,
 * or undoes, what it announces (see openStore):
 *
 * - `buffer.replacing` ({movedTo, error}): a corrupt store is being moved
 *   aside and a new epoch, its first event the `buffer-corrupt` gap, created
 *   in its place. Killed between the two, the next start found no database
 *   and made a fresh epoch with no gap event: the loss unrecorded.
 * - `buffer.repairing` ({kept}): LevelDB's repair runs in place, the store's
 *   files hard-linked into `kept` first. The repair moves the write-ahead
 *   log into `lost/` once it has turned it into a table, and only later
 *   writes the MANIFEST naming that table: killed in between (it reads
 *   every table meanwhile: seconds on a large buffer), the store opened
 *   without the log's writes, acknowledged events gone and their seqs given
 *   again to new ones.
 */
export type JournalName = 'buffer.replacing' | 'buffer.repairing';

/** Writes the record and syncs it (file and directory) before the step it announces. */
export async function recordJournal(dataDir: string, name: JournalName, value: Record<string, string>): Promise<void> {
  const fh = await open(join(dataDir, name), 'w');
  try {
    await fh.writeFile(JSON.stringify(value));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await syncDir(dataDir);
}

/** The string fields of the record a crash left; undefined when there is none (or it was cut while written: the step it announces comes only after it is synced). */
export async function readJournal(dataDir: string, name: JournalName): Promise<Record<string, string> | undefined> {
  let text: string;
  try {
    text = await readFile(join(dataDir, name), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    return Object.fromEntries(Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return undefined;
  }
}

/** Deletes the record once its step is done, and syncs the directory: what follows must not meet it after a power cut. */
export async function clearJournal(dataDir: string, name: JournalName): Promise<void> {
  await rm(join(dataDir, name), { force: true });
  await syncDir(dataDir);
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
