/** One complete line cut from a file, with where it ends (the checkpoint after it). */
export interface Line {
  /** The line's bytes without its `\n` (and without a `\r` before it), at most maxLineBytes. */
  bytes: Buffer;
  /** File offset of the line's first byte. */
  start: number;
  /** File offset just past its `\n`: the checkpoint once this line is durable. */
  end: number;
  /** Bytes the line really had (without its `\n`, and a `\r` before it); larger than bytes.length when truncated. */
  originalBytes: number;
  truncated: boolean;
}

const NL = 0x0a;
const CR = 0x0d;

/**
 * Cuts a byte stream into lines. A line longer than `maxLineBytes` keeps its
 * first `maxLineBytes` bytes (cut on a UTF-8 character boundary) and the
 * rest is counted and skipped as it streams by, so a file without newlines
 * costs at most `maxLineBytes` of memory, never more (DESIGN §6). A partial
 * last line stays here until its newline arrives.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private kept = 0;
  private seen = 0;
  /** The last byte of the line so far (-1: none): a \r there, before the \n, is part of the line ending. */
  private lastByte = -1;
  private lineStart: number;

  constructor(
    private readonly maxLineBytes: number,
    /** File offset of the first byte that will be pushed. */
    start: number,
  ) {
    this.lineStart = start;
  }

  /** Bytes of the partial line held (≤ maxLineBytes). */
  get pendingBytes(): number {
    return this.kept;
  }

  /** True while a line without its newline has started. */
  get hasPartial(): boolean {
    return this.seen > 0;
  }

  /** Feeds the next chunk (contiguous with the previous one); returns the lines it completed. */
  push(chunk: Buffer): Line[] {
    const lines: Line[] = [];
    let from = 0;
    while (from < chunk.length) {
      const nl = chunk.indexOf(NL, from);
      const stop = nl === -1 ? chunk.length : nl;
      this.take(chunk.subarray(from, stop));
      if (nl === -1) break;
      lines.push(this.finish(this.lineStart + this.seen + 1));
      from = nl + 1;
    }
    return lines;
  }

  /** The partial line as a line of its own (a rotated file that will not grow any more); undefined when none. */
  flush(): Line | undefined {
    if (this.seen === 0) return undefined;
    return this.finish(this.lineStart + this.seen);
  }

  private take(piece: Buffer): void {
    if (piece.length === 0) return;
    this.seen += piece.length;
    this.lastByte = piece[piece.length - 1] as number;
    const room = this.maxLineBytes - this.kept;
    if (room <= 0) return;
    // Copied: the caller may reuse or drop the chunk, and a slice would pin it.
    const keep = Buffer.from(piece.subarray(0, room));
    this.parts.push(keep);
    this.kept += keep.length;
  }

  private finish(end: number): Line {
    let bytes = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.kept);
    // CRLF: the \r belongs to the line ending, not to the text, so it counts neither in the line's length nor
    // against maxLineBytes (a line of exactly maxLineBytes is whole: its \r was simply not kept).
    const original = this.lastByte === CR && end > this.lineStart + this.seen ? this.seen - 1 : this.seen;
    if (bytes.length > original) bytes = bytes.subarray(0, original);
    const truncated = original > this.maxLineBytes;
    if (truncated) bytes = bytes.subarray(0, completeUtf8Length(bytes));
    const line: Line = { bytes, start: this.lineStart, end, originalBytes: original, truncated };
    this.parts = [];
    this.kept = 0;
    this.seen = 0;
    this.lastByte = -1;
    this.lineStart = end;
    return line;
  }
}

/**
 * Length of `bytes` without a UTF-8 character cut short at its end (a cut at
 * a byte limit can split one); invalid sequences are left for the decoder.
 */
export function completeUtf8Length(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let back = 1; back <= Math.min(4, n); back += 1) {
    const b = bytes[n - back] as number;
    if ((b & 0xc0) === 0x80) continue;
    const need = b < 0x80 ? 1 : (b & 0xe0) === 0xc0 ? 2 : (b & 0xf0) === 0xe0 ? 3 : (b & 0xf8) === 0xf0 ? 4 : 1;
    return back < need ? n - back : n;
  }
  return n;
}
