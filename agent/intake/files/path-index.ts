/** Key listing every followed path, so a restart finds paths a glob no longer matches (their rotated files may still hold lines). */
export const INDEX_KEY = 'files!paths';

/**
 * The set of followed paths as stored under INDEX_KEY. Changes are written
 * with the next commit of the intake (`extra()`), and marked clean once
 * that commit is durable (`written()`).
 */
export class PathIndex {
  private paths = new Set<string>();
  private dirty = false;

  load(raw: string | undefined): void {
    this.paths = new Set(parse(raw));
  }

  [Symbol.iterator](): Iterator<string> {
    return this.paths[Symbol.iterator]();
  }

  add(path: string): void {
    if (this.paths.has(path)) return;
    this.paths.add(path);
    this.dirty = true;
  }

  delete(path: string): void {
    if (this.paths.delete(path)) this.dirty = true;
  }

  get changed(): boolean {
    return this.dirty;
  }

  /** The op to write with the next commit, when the set changed since the last one. */
  extra(): { key: string; value: string }[] {
    return this.dirty ? [{ key: INDEX_KEY, value: JSON.stringify([...this.paths]) }] : [];
  }

  /** Called after a commit that carried `extra()` is durable. */
  written(): void {
    this.dirty = false;
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
