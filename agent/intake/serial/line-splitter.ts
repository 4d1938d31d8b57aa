/**
 * Splits a byte stream into delimiter-ended records with bounded memory: a
 * device that never sends its delimiter must not grow the agent (DESIGN §6).
 *
 * A record longer than `maxLineBytes` is cut: its first `maxLineBytes` bytes
 * are kept and the rest of that line is counted and discarded up to the next
 * delimiter. The cut record is returned when its delimiter arrives (with the
 * full length seen), or earlier through `flushOverflow()` when the caller
 * decides the device has gone quiet (then the length is what was seen so far,
 * and the discarded tail is reported once its delimiter arrives).
 */
export type SplitRecord =
  /** A whole record, delimiter removed. */
  | { kind: 'line'; bytes: Buffer }
  /** The kept head of an overlong record; `complete` once its delimiter was seen. */
  | { kind: 'truncated'; bytes: Buffer; bytesSeen: number; complete: boolean }
  /** The end of an overlong record already reported by `flushOverflow()`: nothing kept, only counted. */
  | { kind: 'discarded'; bytesSeen: number };

interface Overflow {
  /** The kept head, exactly maxLineBytes long; undefined once reported. */
  head: Buffer | undefined;
  /** Bytes of this record seen so far, the carry excluded. */
  seen: number;
}

const CR = 0x0d;

export interface LineSplitterOptions {
  /**
   * A `\r` just before the delimiter is the caller's to strip (CRLF devices
   * with the `\n` delimiter): it is not counted against maxLineBytes, so a
   * record of exactly maxLineBytes plus that `\r` is whole (still ending in `\r`).
   */
  crlf?: boolean;
}

export class LineSplitter {
  private readonly delimiter: Buffer;
  private readonly crlf: boolean;
  /** Unscanned bytes: a partial record (≤ maxLineBytes) or, in overflow, a possible delimiter prefix. */
  private pending: Buffer = Buffer.alloc(0);
  private overflow: Overflow | undefined;

  constructor(
    delimiter: string | Buffer,
    private readonly maxLineBytes: number,
    options: LineSplitterOptions = {},
  ) {
    this.delimiter = typeof delimiter === 'string' ? Buffer.from(delimiter, 'utf8') : delimiter;
    this.crlf = options.crlf ?? false;
    if (this.delimiter.length === 0) throw new RangeError('delimiter must not be empty');
    if (!(maxLineBytes >= 1)) throw new RangeError('maxLineBytes must be at least 1');
  }

  /** Bytes held (partial record plus a kept head): at most maxLineBytes + delimiter length - 1 between pushes (+1 with crlf). */
  get heldBytes(): number {
    return this.pending.length + (this.overflow?.head?.length ?? 0);
  }

  /** True while the rest of an overlong record is being discarded. */
  get inOverflow(): boolean {
    return this.overflow !== undefined;
  }

  push(chunk: Buffer): SplitRecord[] {
    const out: SplitRecord[] = [];
    const dlen = this.delimiter.length;
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    // Only the last dlen-1 old bytes can start a delimiter that this chunk completes.
    let from = Math.max(0, this.pending.length - (dlen - 1));
    let start = 0;
    for (;;) {
      const at = buf.indexOf(this.delimiter, from);
      if (at === -1) break;
      out.push(this.endRecord(buf, start, at));
      start = at + dlen;
      from = start;
    }
    this.keepRest(buf.subarray(start));
    return out;
  }

  /**
   * Returns the kept head of an overlong record now, before its delimiter
   * (the caller's idle timer: a device that stopped mid-line). The rest of
   * the record is still discarded up to its delimiter.
   */
  flushOverflow(): SplitRecord | undefined {
    const o = this.overflow;
    if (o?.head === undefined) return undefined;
    // The carry may be the start of the delimiter, so it is not counted yet.
    const record: SplitRecord = { kind: 'truncated', bytes: o.head, bytesSeen: o.seen, complete: false };
    o.head = undefined;
    return record;
  }

  /** At end of stream (device gone, intake closing): whatever is held, as a last record. */
  end(): SplitRecord | undefined {
    const o = this.overflow;
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    this.overflow = undefined;
    if (o !== undefined) {
      const bytesSeen = o.seen + rest.length;
      return o.head === undefined ? { kind: 'discarded', bytesSeen } : { kind: 'truncated', bytes: o.head, bytesSeen, complete: false };
    }
    return rest.length === 0 ? undefined : { kind: 'line', bytes: Buffer.from(rest) };
  }

  private endRecord(buf: Buffer, start: number, at: number): SplitRecord {
    const length = at - start;
    const o = this.overflow;
    if (o !== undefined) {
      this.overflow = undefined;
      const bytesSeen = o.seen + length;
      return o.head === undefined ? { kind: 'discarded', bytesSeen } : { kind: 'truncated', bytes: o.head, bytesSeen, complete: true };
    }
    if (length > this.maxLineBytes + this.crAllowance(buf, start)) {
      return { kind: 'truncated', bytes: Buffer.from(buf.subarray(start, start + this.maxLineBytes)), bytesSeen: length, complete: true };
    }
    // A copy, so a record does not pin the whole read chunk in memory.
    return { kind: 'line', bytes: Buffer.from(buf.subarray(start, at)) };
  }

  /** 1 when the byte just past maxLineBytes of the record starting at `start` is a \r to be stripped (see crlf). */
  private crAllowance(buf: Buffer, start: number): number {
    return this.crlf && buf[start + this.maxLineBytes] === CR ? 1 : 0;
  }

  /** Holds the bytes after the last delimiter, entering overflow when they pass the limit. */
  private keepRest(rest: Buffer): void {
    const carryMax = this.delimiter.length - 1;
    // The last dlen-1 bytes may be a delimiter's start: they do not make a record overlong yet.
    if (this.overflow === undefined && rest.length <= this.maxLineBytes + carryMax + this.crAllowance(rest, 0)) {
      this.pending = rest.length === 0 ? Buffer.alloc(0) : Buffer.from(rest);
      return;
    }
    let discard = rest;
    if (this.overflow === undefined) {
      this.overflow = { head: Buffer.from(rest.subarray(0, this.maxLineBytes)), seen: this.maxLineBytes };
      discard = rest.subarray(this.maxLineBytes);
    }
    // Keep only what could be the start of a delimiter split across chunks.
    const carry = Math.min(carryMax, discard.length);
    this.overflow.seen += discard.length - carry;
    this.pending = Buffer.from(discard.subarray(discard.length - carry));
  }
}
