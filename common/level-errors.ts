/**
 * True when LevelDB reports an I/O error (a full or failing disk) in an error
 * or any cause under it: the data is not known to be damaged. LevelDB refuses
 * every write on a handle after one write, flush or compaction failed, so
 * both the agent's buffer and the gateway's store reopen their database then.
 */
export function isLevelIoError(err: unknown): boolean {
  return causeChain(err).some((e) => (e as { code?: unknown }).code === 'LEVEL_IO_ERROR');
}

/** True when LevelDB could not take the database's LOCK file: another process has the database open. */
export function isLevelLocked(err: unknown): boolean {
  return causeChain(err).some((e) => (e as { code?: unknown }).code === 'LEVEL_LOCKED');
}

/** An error and the causes under it (at most 8: a cycle cannot loop), as abstract-level nests LevelDB's own. */
export function causeChain(err: unknown): Error[] {
  const chain: Error[] = [];
  for (let e = err; e instanceof Error && chain.length < 8; e = e.cause) chain.push(e);
  return chain;
}

/**
 * An error's message followed by those of the causes under it that add
 * something: abstract-level wraps what LevelDB said ("IO error: …: No space
 * left on device") under its own "Database failed to open".
 */
export function levelMessage(err: unknown): string {
  const parts: string[] = [];
  for (const e of causeChain(err)) if (!parts.some((p) => p.includes(e.message))) parts.push(e.message);
  return parts.length === 0 ? String(err) : parts.join(': ');
}
