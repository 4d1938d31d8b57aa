/**
 * The LevelDB key layout. Every key is `<prefix>!<parts>`; sources and
 * agents cannot contain `!` (SOURCE_RE), types are escaped, ids come last.
 * Commit numbers are 16 hex digits so that byte order is numeric order.
 *
 *   m!head                          ledger head, commit counter (read at open, no scan)
 *   b!<commit>                      the commit's stored events: one deflated block of canonical JSON lines
 *   k!<commit>                      the commit's custody records: one deflated block of canonical JSON lines
 *   d!<day>!<commit>                per-day index of event blocks ("min,max" receive ms) — queries and retention
 *   s!<source>!<day>!<commit>       same, per source present in the block
 *   y!<type>!<day>!<commit>         same, per type present in the block
 *   id!<id>                         dedup index: "<commit36>,<index>,<receivedMs36>"
 *   cs!<source>!<commit>            custody blocks holding records of this source
 *   ci!<id>!<commit>                custody blocks holding a duplicate/rejected record of this id,
 *                                   or an accepted one whose id! pointer a later accept replaced
 *   ra!<agent>!<epoch>              registry: seqs, gaps, chain head (JSON)
 *   rs!<source>                     registry: per-source counts (JSON), as of the checkpoint in m!head's `sourcesAt`
 *   r!<commit>                      the event block was deleted by retention: the hex commit whose `retained` custody
 *                                   record proves it (retention-proof.ts); empty in stores written before that record existed
 *   m!retention-legacy              set once no empty `r!` marker is left to adopt (level-retention.ts)
 *   q!<key>!<hash>                  the damaged value of registry key <key>, kept as it was when the store mended
 *                                   the key (registry-repair.ts); <hash>: 16 hex digits of the value's SHA-256
 *
 * A day is the UTC date (yyyymmdd) of the latest receive time in the block:
 * retention deleting day D never removes an event received after D ends.
 */
export const HEAD_KEY = 'm!head';
export const LEGACY_RETENTION_KEY = 'm!retention-legacy';

export function commitHex(commit: number): string {
  return commit.toString(16).padStart(16, '0');
}

export function parseCommitHex(hex: string): number {
  return Number.parseInt(hex, 16);
}

export const DAY_MS = 86_400_000;

export function dayOf(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear().toString().padStart(4, '0')}${(d.getUTCMonth() + 1).toString().padStart(2, '0')}${d
    .getUTCDate()
    .toString()
    .padStart(2, '0')}`;
}

/** `!` separates key parts and `%` escapes; a type may hold either. */
export function escapePart(value: string): string {
  return value.replace(/%/g, '%25').replace(/!/g, '%21');
}

export const blockKey = (commit: number): string => `b!${commitHex(commit)}`;
export const custodyKey = (commit: number): string => `k!${commitHex(commit)}`;
export const retainedKey = (commit: number): string => `r!${commitHex(commit)}`;
export const idKey = (id: string): string => `id!${id}`;
export const custodyIdKey = (id: string, commit: number): string => `ci!${id}!${commitHex(commit)}`;
export const custodySourceKey = (source: string, commit: number): string => `cs!${source}!${commitHex(commit)}`;

/** The value of a key whose name is all it says (`ci!`, `cs!`). */
export const EMPTY_VALUE = Buffer.alloc(0);
export const epochKey = (agent: string, epoch: string): string => `ra!${agent}!${epoch}`;
export const sourceKey = (source: string): string => `rs!${source}`;
export const quarantineKey = (key: string, hash: string): string => `q!${key}!${hash}`;

/** Prefix of one event index: all blocks, one source's, or one type's. */
export function indexPrefix(filter: { source?: string; type?: string }): string {
  if (filter.source !== undefined) return `s!${filter.source}!`;
  if (filter.type !== undefined) return `y!${escapePart(filter.type)}!`;
  return 'd!';
}

export function indexKeys(day: string, commit: number, sources: Iterable<string>, types: Iterable<string>): string[] {
  const tail = `${day}!${commitHex(commit)}`;
  const keys = [`d!${tail}`];
  for (const s of sources) keys.push(`s!${s}!${tail}`);
  for (const t of types) keys.push(`y!${escapePart(t)}!${tail}`);
  return keys;
}

/** Day and commit from the tail of an index key (`...!<day>!<commit>`). */
export function parseIndexTail(key: string): { day: string; commit: number } {
  return { day: key.slice(-25, -17), commit: parseCommitHex(key.slice(-16)) };
}

/** Dedup pointer: where the event is and when it was received. */
export interface IdPointer {
  commit: number;
  index: number;
  receivedMs: number;
}

export function encodePointer(p: IdPointer): string {
  return `${p.commit.toString(36)},${p.index.toString(36)},${p.receivedMs.toString(36)}`;
}

export function decodePointer(text: string): IdPointer | undefined {
  const [c, i, r] = text.split(',');
  if (c === undefined || i === undefined || r === undefined) return undefined;
  return { commit: Number.parseInt(c, 36), index: Number.parseInt(i, 36), receivedMs: Number.parseInt(r, 36) };
}

/** Why an `id!` value that `pointerOf` refuses is damage (verify and the query by id say the same). */
export function notPointer(value: string): string {
  return `holds ${JSON.stringify(value.slice(0, 40))}, not a dedup pointer`;
}

/** A dedup pointer exactly as the store writes one: anything else in an `id!` value is not one (damage). */
export function pointerOf(text: string): IdPointer | undefined {
  const p = decodePointer(text);
  return p !== undefined && encodePointer(p) === text ? p : undefined;
}
