/** What one chunk of a TCP stream gave. */
export interface Frames {
  messages: Buffer[];
  /** Messages skipped for being longer than maxMessageBytes. */
  oversize: number;
  /**
   * Set when a frame announced more octets than maxMessageBytes: the stream can no longer be framed
   * (`messages` holds what came before it), and the decoder takes nothing more from it.
   */
  framingError?: { octets: number };
}

const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;
const SP = 0x20;
// An octet count has at most this many digits (RFC 6587 §3.4.1 MSG-LEN; 10 digits already exceed any limit).
const MAX_DIGITS = 10;

/**
 * Splits a syslog TCP stream into messages, detecting the framing of each
 * frame as rsyslog does (RFC 6587): a frame starting with a digit is
 * octet-counted (`LEN SP MSG`), anything else ends at LF
 * (non-transparent framing). Memory is bounded by maxMessageBytes: a longer
 * LF-framed message is skipped as it streams by, up to the next LF, and
 * counted, never held. An octet count over maxMessageBytes is a framing
 * error, not a message to skip: a corrupt or hostile count (999999999) would
 * make skipping it swallow everything after it on the connection, and
 * nothing tells a true count from a false one. The decoder reports it and
 * stops; the listener closes the connection (docs/intake-syslog.md).
 */
export class FrameDecoder {
  private pending: Buffer = Buffer.alloc(0);
  /** Discarding an oversize LF-framed message up to its LF. */
  private skipToLf = false;
  /** A framing error ended the stream: everything after it is ignored. */
  private broken = false;

  constructor(private readonly maxMessageBytes: number) {}

  push(chunk: Buffer): Frames {
    const out: Frames = { messages: [], oversize: 0 };
    if (this.broken) return out;
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    for (;;) {
      if (this.skipToLf) {
        const lf = buf.indexOf(LF);
        if (lf === -1) {
          buf = buf.subarray(buf.length);
          break;
        }
        this.skipToLf = false;
        buf = buf.subarray(lf + 1);
      }
      // Separators between frames (a LF after an octet-counted frame, NUL from old senders).
      let start = 0;
      while (start < buf.length && (buf[start] === LF || buf[start] === CR || buf[start] === NUL)) start += 1;
      buf = buf.subarray(start);
      if (buf.length === 0) break;
      const next = this.frame(buf, out);
      if (out.framingError !== undefined) {
        this.broken = true;
        buf = buf.subarray(buf.length);
        break;
      }
      if (next === undefined) break;
      buf = buf.subarray(next);
    }
    // Copied so a small remainder does not pin a large chunk.
    this.pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    return out;
  }

  /** The unterminated last message when the stream ends (a sender that closes without a final LF). */
  end(): Buffer | undefined {
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    if (this.broken || this.skipToLf || rest.length === 0) return undefined;
    return trimCr(rest);
  }

  /** Reads one frame at the start of `buf`; returns how many bytes it used, or undefined when more are needed. */
  private frame(buf: Buffer, out: Frames): number | undefined {
    const first = buf[0] as number;
    if (first >= 0x31 && first <= 0x39) {
      let i = 1;
      while (i < buf.length && i <= MAX_DIGITS && (buf[i] as number) >= 0x30 && (buf[i] as number) <= 0x39) i += 1;
      if (i === buf.length && i <= MAX_DIGITS) return undefined;
      if (buf[i] === SP) {
        const length = Number(buf.subarray(0, i).toString('latin1'));
        if (length > this.maxMessageBytes) {
          out.framingError = { octets: length };
          return undefined;
        }
        const total = i + 1 + length;
        if (buf.length < total) return undefined;
        out.messages.push(Buffer.from(buf.subarray(i + 1, total)));
        return total;
      }
      // Digits not followed by a space: not an octet count, so an LF-framed message that starts with a digit.
    }
    const lf = buf.indexOf(LF);
    if (lf === -1) {
      // A CR last may be the first half of a CRLF: the message before it can still be within the limit.
      if (buf.length > this.maxMessageBytes + (buf[buf.length - 1] === CR ? 1 : 0)) {
        out.oversize += 1;
        this.skipToLf = true;
        return buf.length;
      }
      return undefined;
    }
    // The limit is the message's: a CR before the LF is framing, as the LF is.
    const message = trimCr(buf.subarray(0, lf));
    if (message.length > this.maxMessageBytes) out.oversize += 1;
    else out.messages.push(Buffer.from(message));
    return lf + 1;
  }
}

function trimCr(buf: Buffer): Buffer {
  return buf.length > 0 && buf[buf.length - 1] === CR ? buf.subarray(0, buf.length - 1) : buf;
}
