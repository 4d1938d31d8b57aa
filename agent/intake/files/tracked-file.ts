import type { BigIntStats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { checkFingerprint, fileIdOf, fingerprint, type FileId, type FileRecord, type Fingerprint } from './checkpoint.js';
import { LineSplitter, type Line } from './line-splitter.js';

/** What was read in one go: complete lines and the checkpoint they lead to. */
export interface ReadResult {
  lines: Line[];
  /** Bytes that came from the file (0: nothing new). */
  bytesRead: number;
}

/**
 * One open file being followed, by identity. The handle stays open across a
 * rename or unlink, so a rotated file is read to its end through it.
 * `offset` only moves when the caller says the lines before it are durable;
 * `readPos` runs ahead of it by what has been read but not yet committed.
 */
export class TrackedFile {
  /** Checkpoint: every line before it is durable. */
  offset: number;
  /** Next byte to read from the file. */
  readPos: number;
  /**
   * Size last seen by stat. Reads do not raise it: a read may take bytes of
   * a new generation at the old offset (a copytruncate since the last stat),
   * and after such a read is rewound this still tells how long the file we
   * followed was (record() adds what reads kept).
   */
  size: number;
  fp: Fingerprint;
  /** Rotated away (renamed, deleted, or a copytruncate copy): read to the end, then close. */
  draining = false;
  /** Known not to grow (a copytruncate copy): closed as soon as it is read to its end. */
  complete = false;
  /** The last read found nothing new (only then can a rotated file be closed). */
  atEof = false;
  /** Clock ms when the file last gave bytes (or was opened). */
  lastGrowth: number;
  /**
   * Clock ms since which the file has been empty as far as we know (opened or truncated empty); undefined
   * once it has bytes. An empty fingerprint cannot tell a file that grew from one written, copytruncated
   * and written again meanwhile: the first bytes it shows are the moment to look for such a copy.
   */
  emptySince: number | undefined;
  private splitter: LineSplitter;
  /** Size, mtime and ctime (ns) of the path's stat at the last look that checked the fingerprint, and when (clock ms). */
  private looked: { stat: string; at: number } | undefined;
  /** A look found nothing changed with everything read: the next readBatch would read 0 bytes, and does not read. */
  private quiet = false;

  private constructor(
    readonly id: FileId,
    /** The path it was found under (kept for events and logs after a rename). */
    readonly path: string,
    private readonly fh: FileHandle,
    offset: number,
    size: number,
    fp: Fingerprint,
    private readonly maxLineBytes: number,
    now: number,
  ) {
    this.offset = offset;
    this.readPos = offset;
    this.size = size;
    this.fp = fp;
    this.lastGrowth = now;
    this.emptySince = fp.len === 0 ? now : undefined;
    this.splitter = new LineSplitter(maxLineBytes, offset);
  }

  /** Opens a path read-only; the identity is that of what was opened, whatever the path points to afterwards. */
  static async open(path: string, maxLineBytes: number, now: number): Promise<TrackedFile> {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat({ bigint: true });
      const size = Number(st.size);
      return new TrackedFile(fileIdOf(st), path, fh, 0, size, await fingerprint(fh, size), maxLineBytes, now);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get handle(): FileHandle {
    return this.fh;
  }

  /** Moves both positions to `offset` (a checkpoint, `end`, or 0 after a truncation) and drops what was read. */
  seek(offset: number): void {
    this.offset = offset;
    this.readPos = offset;
    this.atEof = false;
    this.splitter = new LineSplitter(this.maxLineBytes, offset);
  }

  /** Forgets read-but-uncommitted bytes (the append for them was given up): they are read again. */
  rewind(): void {
    this.seek(this.offset);
  }

  /** Reads up to `maxBytes` from readPos; returns the complete lines among them. */
  async read(maxBytes: number, now: number): Promise<ReadResult> {
    const buf = Buffer.allocUnsafe(maxBytes);
    const { bytesRead } = await this.fh.read(buf, 0, maxBytes, this.readPos);
    this.atEof = bytesRead === 0;
    if (bytesRead === 0) return { lines: [], bytesRead: 0 };
    this.readPos += bytesRead;
    this.lastGrowth = now;
    return { lines: this.splitter.push(buf.subarray(0, bytesRead)), bytesRead };
  }

  /** True while a line without its newline has been read. */
  get hasPartial(): boolean {
    return this.splitter.hasPartial;
  }

  /** Reads chunks until `maxLines` lines or `maxBytes` bytes, the end of the file, or `stop()`. */
  async readBatch(maxLines: number, maxBytes: number, chunkBytes: number, now: number, stop: () => boolean): Promise<{ lines: Line[]; bytes: number }> {
    const lines: Line[] = [];
    let bytes = 0;
    if (this.quiet) {
      // What changed since the look is seen by the next one (its stat differs), as a change after the read would be.
      this.quiet = false;
      return { lines, bytes };
    }
    while (lines.length < maxLines && bytes < maxBytes && !stop()) {
      const got = await this.read(chunkBytes, now);
      if (got.bytesRead === 0) break;
      bytes += got.bytesRead;
      lines.push(...got.lines);
    }
    return { lines, bytes };
  }

  /** The partial last line, once the file is known not to grow any more. */
  flushPartial(): Line | undefined {
    return this.splitter.flush();
  }

  /** Current size and link count of the open file (nlink 0: deleted). */
  async stat(): Promise<{ size: number; nlink: number }> {
    const st = await this.fh.stat();
    return { size: st.size, nlink: st.nlink };
  }

  /**
   * True when the file is still the one read so far: not shorter than what
   * was read, and starting with the fingerprinted bytes. While the
   * fingerprint is shorter than FINGERPRINT_BYTES it is extended, by the
   * same read that checks it, so a rewritten start is never taken as known.
   */
  async unchanged(size: number): Promise<boolean> {
    if (size < this.readPos) return false;
    const fp = await checkFingerprint(this.fh, this.fp, size);
    if (fp === undefined) return false;
    this.fp = fp;
    return true;
  }

  /**
   * A look at the path that finds its stat as at the last look that checked the fingerprint (size, and
   * mtime and ctime to the ns: a write or truncation moves them), within `fullLookMs` of it: the file is
   * unchanged without reading its first bytes again, and, read to its end, the next readBatch reads
   * nothing. An idle file then costs its look one stat, not a stat, a fingerprint read and hash, and a
   * 64 KiB read (500 idle files took a quarter of a core). The full look every `fullLookMs` bounds what a
   * file system with coarse timestamps could hide (a copytruncate and a rewrite to the same size within
   * one tick).
   */
  /** Set by lookedUnchanged: nothing changed and everything was read, so this poll has nothing to do here. */
  get quietNow(): boolean {
    return this.quiet;
  }

  lookedUnchanged(st: BigIntStats, now: number, fullLookMs: number): boolean {
    const looked = this.looked;
    if (looked === undefined || looked.stat !== statKey(st) || now - looked.at >= fullLookMs || now < looked.at) return false;
    this.quiet = this.atEof && this.readPos >= Number(st.size);
    return true;
  }

  /** Remembers the stat of a look that checked the fingerprint and found the file unchanged (see lookedUnchanged). */
  rememberLook(st: BigIntStats, now: number): void {
    this.looked = { stat: statKey(st), at: now };
  }

  /** Takes the fingerprint again from the start (after a truncation the file has new first bytes). */
  async resetFingerprint(now: number): Promise<void> {
    this.looked = undefined;
    this.fp = await fingerprint(this.fh, this.size);
    this.emptySince = this.fp.len === 0 ? now : undefined;
  }

  /** The checkpoint record for `offset` (what the caller commits with the events before it). */
  record(offset: number): FileRecord {
    // Bytes known to exist: as stat'ed, or as read (and not rewound) since.
    return { path: this.path, offset, size: Math.max(this.size, this.readPos, offset), fp: this.fp };
  }

  close(): Promise<void> {
    return this.fh.close().catch(() => undefined);
  }
}

/** Size, mtime and ctime (ns) of a stat: a write or a truncation changes it. */
export function statKey(st: BigIntStats): string {
  return `${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}
