import { errorCode, type CustodyRecord, type StoredEvent } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';
import type { CustodyPage, CustodyQuery, DamagedBlock, EventPage, EventQuery } from '../types.js';
import type { EventBlock } from './block-codec.js';
import { commitHex, DAY_MS, dayOf, decodePointer, idKey, indexPrefix, notPointer, parseCommitHex, parseIndexTail, pointerOf } from './keys.js';
import type { LevelContext } from './level-storage.js';

interface Position {
  day: string;
  commit: number;
  index: number;
}

function encodeCursor(p: Position): string {
  return Buffer.from(`1:${p.day}:${p.commit}:${p.index}`).toString('base64url');
}

function decodeCursor(cursor: string): Position {
  const m = /^1:(\d{8}):(\d+):(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (m === null) throw GatewayErrors.METEORZX_INVALID_CURSOR('cursor is not one this gateway issued', { userError: true });
  return { day: m[1] as string, commit: Number(m[2]), index: Number(m[3]) };
}

/**
 * The day of `ms` as an index key part. Past year 9999 a day has nine
 * digits and would sort before every real day's key ("100000101" <
 * "20261207"): it is then `~`, after them all — no event is received that late.
 */
function dayPart(ms: number): string {
  const day = dayOf(ms);
  return day.length === 8 ? day : '~';
}

/**
 * Most damaged blocks one page names. A page that reaches it ends there, its
 * cursor past the last one named, so the list (an answer header) stays small
 * however much of the store is damaged.
 */
export const MAX_DAMAGED_PER_PAGE = 16;
/** A cursor's index past every event of its block: where a page resumes after a damaged block it named. */
const PAST_BLOCK = 2 ** 31;

/**
 * A block read, or the damage that stops it. Only METEORZX_STORAGE_CORRUPT
 * (the block does not decode) is damage: any other failure — a closed
 * store, an I/O error — still fails the whole read.
 */
async function readBlock<T>(read: Promise<T>): Promise<{ value: T } | { error: string }> {
  try {
    return { value: await read };
  } catch (err) {
    if (errorCode(err) !== 'METEORZX_STORAGE_CORRUPT') throw err;
    return { error: (err as Error).message.slice(0, 200) };
  }
}

function matches(event: StoredEvent, q: EventQuery, receivedMs: number): boolean {
  if (q.source !== undefined && event.source !== q.source) return false;
  if (q.type !== undefined && event.type !== q.type) return false;
  if (q.since !== undefined && receivedMs < q.since) return false;
  if (q.until !== undefined && receivedMs >= q.until) return false;
  return true;
}

/**
 * Events oldest first: blocks in (day, commit) order — the order the gateway
 * received them — through the narrowest index the filter allows. Each index
 * entry carries its block's receive-time range, so blocks outside
 * since/until are skipped without being read. A page ends when `limit` is
 * reached or the next event would take it past `maxBytes`; the cursor is
 * given only when another match exists after it.
 */
export async function queryEvents(ctx: LevelContext, q: EventQuery): Promise<EventPage> {
  const limit = Math.max(1, Math.floor(q.limit));
  const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
  if (q.id !== undefined) return queryById(ctx, q, q.id);
  const prefix = indexPrefix(q);
  let gte = prefix + (q.since === undefined ? '' : dayPart(q.since));
  if (after !== undefined) {
    const fromCursor = `${prefix}${after.day}!${commitHex(after.commit)}`;
    if (fromCursor > gte) gte = fromCursor;
  }
  // A block belongs to the day of its latest event, so one straddling midnight after `until` sits a day later.
  const lt = q.until === undefined ? `${prefix}~` : `${prefix}${dayPart(q.until + DAY_MS)}~`;
  const maxBytes = q.maxBytes ?? Number.POSITIVE_INFINITY;
  const events: StoredEvent[] = [];
  const damaged: DamagedBlock[] = [];
  let bytes = 0;
  let last: Position | undefined;
  let more = false;
  scan: for await (const [key, value] of ctx.db.iterator({ gte, lt })) {
    const { day, commit } = parseIndexTail(key);
    const [min, max] = value.toString().split(',').map(Number) as [number, number];
    if (q.since !== undefined && max < q.since) continue;
    if (q.until !== undefined && min >= q.until) continue;
    const read = await readBlock(ctx.eventBlock(commit));
    if ('error' in read) {
      // The page before named it, and ended on it.
      if (after !== undefined && commit === after.commit && after.index === PAST_BLOCK) continue;
      // Its neighbours are still served: the page names it and goes on, and a cursor from here resumes past it.
      damaged.push({ kind: 'event', block: commit, ...receivedRange(min, max), ...(await heldEvents(ctx, commit)), error: read.error });
      last = { day, commit, index: PAST_BLOCK };
      if (damaged.length === MAX_DAMAGED_PER_PAGE) {
        more = true;
        break;
      }
      continue;
    }
    const block: EventBlock | undefined = read.value;
    if (block === undefined) continue; // removed by retention meanwhile
    for (let index = 0; index < block.events.length; index += 1) {
      if (after !== undefined && commit === after.commit && index <= after.index) continue;
      const event = block.events[index] as StoredEvent;
      if (!matches(event, q, Date.parse(event.ingest.receivedAt))) continue;
      // The stored line is the event's canonical JSON: what the page's NDJSON holds of it, in other key order.
      const size = maxBytes === Number.POSITIVE_INFINITY ? 0 : Buffer.byteLength(block.lines[index] as string) + 1;
      if (events.length === limit || (events.length > 0 && bytes + size > maxBytes)) {
        more = true;
        break scan;
      }
      bytes += size;
      events.push(event);
      last = { day, commit, index };
    }
  }
  return {
    events,
    ...(more && last !== undefined ? { nextCursor: encodeCursor(last) } : {}),
    ...(damaged.length > 0 ? { damaged } : {}),
  };
}

/** How many events a damaged event block held: its commit's accepted custody records, when their block reads. */
async function heldEvents(ctx: LevelContext, commit: number): Promise<Pick<DamagedBlock, 'events'>> {
  const read = await readBlock(ctx.custodyBlock(commit));
  if ('error' in read || read.value === undefined) return {};
  return { events: read.value.filter((r) => r.outcome === 'accepted').length };
}

/** An index key's receive-time range as RFC 3339, where it is one (a damaged key's is not named). */
function receivedRange(min: number, max: number): Pick<DamagedBlock, 'receivedFrom' | 'receivedTo'> {
  const valid = (ms: number): boolean => Number.isFinite(ms) && Math.abs(ms) <= 8.64e15;
  return valid(min) && valid(max) ? { receivedFrom: new Date(min).toISOString(), receivedTo: new Date(max).toISOString() } : {};
}

/**
 * The event stored under one id: the one its dedup pointer names, read
 * from its block without an index scan. An id accepted again after its
 * dedup window names its latest copy; custody by id lists every accept
 * (with the hash of each copy), and the earlier copies are in the pages of
 * the other filters. Retention deletes the pointer with the event.
 */
async function queryById(ctx: LevelContext, q: EventQuery, id: string): Promise<EventPage> {
  const key = idKey(id);
  const value = (await ctx.db.get(key)) as Buffer | undefined;
  if (value === undefined) return { events: [] };
  const text = value.toString();
  const sound = pointerOf(text);
  // A pointer with a byte changed may still read as the right place (digits parsed up to the damage): the
  // event found there is served when it is this id's, as before; the store's blocks are checksummed.
  const pointer = sound ?? decodePointer(text);
  // A damaged pointer that leads nowhere is named, as a damaged block is: an empty answer alone says the id was never stored.
  const damaged = (error: string, block?: number): EventPage => ({ events: [], damaged: [{ kind: 'pointer', key, ...(block === undefined ? {} : { block }), error }] });
  const unreadable = `dedup pointer ${key} ${notPointer(text)}`;
  if (pointer === undefined || !Number.isSafeInteger(pointer.commit) || pointer.commit < 0 || !Number.isSafeInteger(pointer.index)) return damaged(unreadable);
  const read = await readBlock(ctx.eventBlock(pointer.commit));
  if ('error' in read) {
    const at = receivedRange(pointer.receivedMs, pointer.receivedMs);
    return { events: [], damaged: [{ kind: 'event', block: pointer.commit, ...at, ...(await heldEvents(ctx, pointer.commit)), error: read.error }] };
  }
  if (read.value === undefined) {
    // Retention deletes a block with its pointers: gone meanwhile, or a pointer that names a block never stored.
    if ((await ctx.db.get(key)) === undefined) return { events: [] };
    return damaged(sound === undefined ? unreadable : `dedup pointer ${key} points at commit ${pointer.commit}, which has no event block`, pointer.commit);
  }
  const event = read.value.events[pointer.index];
  if (event?.id !== id) {
    if (sound === undefined) return damaged(unreadable);
    const found = event === undefined ? `which holds ${read.value.events.length} events` : `which holds event ${JSON.stringify(event.id.slice(0, 128))}`;
    return damaged(`dedup pointer ${key} points at commit ${pointer.commit}, index ${pointer.index}, ${found}`, pointer.commit);
  }
  if (!matches(event, q, Date.parse(event.ingest.receivedAt))) return { events: [] };
  return { events: [event] };
}

/** Where a custody page ended: the last record's commit and ledger number. */
interface CustodyPosition {
  commit: number;
  n: number;
}

function encodeCustodyCursor(p: CustodyPosition): string {
  return Buffer.from(`c1:${p.commit}:${p.n}`).toString('base64url');
}

function decodeCustodyCursor(cursor: string): CustodyPosition {
  const m = /^c1:(\d{1,15}):(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (m === null) throw GatewayErrors.METEORZX_INVALID_CURSOR('cursor is not one this gateway issued for custody', { userError: true });
  return { commit: Number(m[1]), n: Number(m[2]) };
}

async function* commitsOf(ctx: LevelContext, prefix: string, from = 0): AsyncIterable<number> {
  for await (const key of ctx.db.keys({ gte: from === 0 ? prefix : `${prefix}${commitHex(from)}`, lt: `${prefix}~` })) {
    // Another id may start with this one followed by `!`: its keys are longer.
    if (key.length === prefix.length + 16) yield parseCommitHex(key.slice(-16));
  }
}

/**
 * Custody records oldest first, by id, by source, or all; at most `limit` (default 1000), after `cursor`.
 * Records are numbered in commit order, so a page resumes at its last record's commit, past its number.
 */
export async function queryCustody(ctx: LevelContext, q: CustodyQuery): Promise<CustodyPage> {
  const limit = q.limit ?? 1000;
  const after = q.cursor === undefined ? undefined : decodeCustodyCursor(q.cursor);
  const from = after?.commit ?? 0;
  const out: CustodyRecord[] = [];
  const damaged: DamagedBlock[] = [];
  let last: CustodyPosition | undefined;
  const page = (nextCursor?: CustodyPosition): CustodyPage => ({
    records: out,
    ...(nextCursor === undefined ? {} : { nextCursor: encodeCustodyCursor(nextCursor) }),
    ...(damaged.length > 0 ? { damaged } : {}),
  });
  const keep = (r: CustodyRecord): boolean =>
    (after === undefined || r.n > after.n) && (q.id === undefined || r.id === q.id) && (q.source === undefined || r.source === q.source);

  let commits: AsyncIterable<number>;
  /** The commit the id's dedup pointer names, whose block must hold the id's accepted record. */
  let pointed: { key: string; commit: number } | undefined;
  if (q.id !== undefined) {
    const key = idKey(q.id);
    const value = (await ctx.db.get(key)) as Buffer | undefined;
    const text = value?.toString();
    const sound = text === undefined ? undefined : pointerOf(text);
    // A damaged pointer that leads nowhere is named (on the first page), as GET /v1/events?id= names it:
    // its commit is where the id's accepted record is, and an answer without it said nothing of that.
    if (text !== undefined && sound === undefined && after === undefined) damaged.push({ kind: 'pointer', key, error: `dedup pointer ${key} ${notPointer(text)}` });
    const commit = (sound ?? (text === undefined ? undefined : decodePointer(text)))?.commit;
    const usable = commit !== undefined && Number.isSafeInteger(commit) && commit >= 0 ? commit : undefined;
    if (sound !== undefined && usable !== undefined) pointed = { key, commit: usable };
    commits = idCommits(ctx, q.id, from, usable);
  } else if (q.source !== undefined) {
    commits = commitsOf(ctx, `cs!${q.source}!`, from);
  } else {
    commits = allCustodyCommits(ctx, from);
  }
  for await (const commit of commits) {
    const read = await readBlock(ctx.custodyBlock(commit));
    if ('error' in read) {
      // Named, and passed: records are numbered in commit order, so every one after it is past this position.
      damaged.push({ kind: 'custody', block: commit, error: read.error });
      last = { commit: commit + 1, n: last?.n ?? after?.n ?? 0 };
      if (damaged.length === MAX_DAMAGED_PER_PAGE) return page(last);
      continue;
    }
    if (pointed !== undefined && commit === pointed.commit && !(read.value ?? []).some((r) => r.id === q.id && r.outcome === 'accepted')) {
      const { key } = pointed;
      damaged.push({ kind: 'pointer', key, block: commit, error: `dedup pointer ${key} points at commit ${commit}, whose custody block holds no accepted record of this id` });
    }
    for (const r of read.value ?? []) {
      if (!keep(r)) continue;
      if (out.length === limit) return page(last);
      out.push(r);
      last = { commit, n: r.n };
    }
  }
  return page();
}

/**
 * The commits holding records of an id, in order from `from`: its `ci!` keys, read as the page needs them
 * (a device that resends one id for months has millions), and its dedup pointer's commit (`pointed`) in its place.
 */
async function* idCommits(ctx: LevelContext, id: string, from: number, pointed: number | undefined): AsyncIterable<number> {
  let pointer = pointed;
  if (pointer !== undefined && pointer < from) pointer = undefined;
  for await (const commit of commitsOf(ctx, `ci!${id}!`, from)) {
    if (pointer !== undefined && pointer <= commit) {
      if (pointer < commit) yield pointer;
      pointer = undefined;
    }
    yield commit;
  }
  if (pointer !== undefined) yield pointer;
}

async function* allCustodyCommits(ctx: LevelContext, from: number): AsyncIterable<number> {
  for await (const key of ctx.db.keys(from === 0 ? { gt: 'k!', lt: 'k"' } : { gte: `k!${commitHex(from)}`, lt: 'k"' })) yield parseCommitHex(key.slice(2));
}
