/**
 * True when LevelDB reports an I/O error (a full or failing disk) in an error
 * or any cause under it: the data is not known to be damaged. LevelDB refuses
 * every write on a handle after one write, flush or compaction failed, so
 * both the agent's buffer and the gateway's store reopen their database then.
 */
export function isLevelIoError(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if ((e as { code?: unknown }).code === 'LEVEL_IO_ERROR') return true;
  }
  return false;
}

/**
 * An error's message followed by those of the causes under it that add
 * something: abstract-level wraps what LevelDB said ("IO error: …: No space
 * left on device") under its own "Database failed to open".
 */
export function levelMessage(err: unknown): string {
  const parts: string[] = [];
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (!parts.some((p) => p.includes(e.message))) parts.push(e.message);
  }
  return parts.length === 0 ? String(err) : parts.join(': ');
}
