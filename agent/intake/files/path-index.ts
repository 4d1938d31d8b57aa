/** Key listing every followed path, so a restart finds paths a glob no longer matches (their rotated files may still hold lines). */
export const INDEX_KEY = 'files!paths';

/**
 * The set of followed paths as stored under INDEX_KEY. Changes are written
 * with the next commit of the intake (`extra()`), and marked clean once
 * that commit is durable (`written()`).
 */
export class PathIndex {
  private paths = new Set<string>();
  /** Bumped at each change; `written` is the one the last durable commit carried. */
  private changes = 0;
  private writtenAt = 0;

  load(raw: string | undefined): void {
    this.paths = new Set(parse(raw));
  }

  [Symbol.iterator](): Iterator<string> {
    return this.paths[Symbol.iterator]();
  }

  add(path: string): void {
    if (this.paths.has(path)) return;
    this.paths.add(path);
    this.changes += 1;
  }

  delete(path: string): void {
    if (this.paths.delete(path)) this.changes += 1;
  }

  get changed(): boolean {
    return this.changes !== this.writtenAt;
  }

  /** The state `extra()` writes now, for `written` once that commit is durable. */
  get version(): number {
    return this.changes;
  }

  /** The op to write with the next commit, when the set changed since the last one. */
  extra(): { key: string; value: string }[] {
    return this.changed ? [{ key: INDEX_KEY, value: JSON.stringify([...this.paths]) }] : [];
  }

  /**
   * Called after a commit that carried `extra()` at `version` is durable. Commits run concurrently (the
   * file loop's appends): one that carried an older state leaves a newer change to be written.
   */
  written(version: number): void {
    this.writtenAt = Math.max(this.writtenAt, version);
  }
}

function parse(raw: string | undefined): string[] {
  if (raw === undefined) return [];
  try {
    const v: unknown = JSON.parse(raw);
    return Array.isArray(v) ? v.filter((p): p is string => typeof p === 'string') : [];
  } catch {
    return [];
  }
}
