/**
 * Many short lines to one Buffer and back, without a string the size of the
 * whole. V8 puts a string over 128 KB in its large-object space: every such
 * string is a fresh mapping whose pages fault in one by one, and with the
 * agent's small young generation it forces a scavenge too. Joining a
 * commit's 1,000 lines as a string and then copying it into bytes cost ≈1.8
 * ms, writing them straight into the Buffer ≈0.2 ms; decoding a block as one
 * string and splitting it cost ≈1.6 ms, decoding it line by line ≈0.2 ms
 * (docs/performance.md). Used by the agent's and the gateway's block codecs
 * and by the agent's push and pull bodies.
 */

/**
 * `open`, the lines separated by `separator`, then `close`, written into one
 * Buffer in one pass, without measuring each line first: `Buffer.byteLength`
 * of a line that is a concatenation (an agent's or the gateway's stored line
 * is one) flattens it into a copy, ≈0.3 µs per 500-byte line, while `write`
 * reads it as it is. The Buffer has room for one byte per UTF-16 code unit
 * and an eighth more; when a write leaves less than one character's room it
 * may have been cut short, and the lines are measured and written exactly.
 */
export function linesBuffer(lines: readonly string[], open = '', separator = '\n', close = ''): Buffer {
  let units = open.length + close.length + Math.max(0, lines.length - 1) * separator.length;
  for (const line of lines) units += line.length;
  const guessed = writeLines(Buffer.allocUnsafe(units + (units >> 3) + 16), lines, open, separator, close);
  if (guessed !== undefined) return guessed;
  let size = Buffer.byteLength(open) + Buffer.byteLength(close) + Math.max(0, lines.length - 1) * Buffer.byteLength(separator);
  for (const line of lines) size += Buffer.byteLength(line);
  // Measured, plus the one character's room the check wants: this always fits.
  return writeLines(Buffer.allocUnsafe(size + 4), lines, open, separator, close) as Buffer;
}

/** The part of `out` written, or undefined when a write may have been cut short (less than one character's room left after it). */
function writeLines(out: Buffer, lines: readonly string[], open: string, separator: string, close: string): Buffer | undefined {
  let at = 0;
  const put = (text: string): boolean => {
    at += out.write(text, at);
    return out.length - at >= 4;
  };
  let fits = put(open);
  for (let i = 0; i < lines.length && fits; i++) fits = (i === 0 || put(separator)) && put(lines[i] as string);
  return fits && put(close) ? out.subarray(0, at) : undefined;
}

/**
 * The `\n`-separated lines of UTF-8 `bytes`, each decoded on its own: the
 * same strings as `bytes.toString('utf8').split('\n')` (a newline byte is
 * never part of a multi-byte sequence, so the cuts fall where the string's
 * would), without the whole text as one string.
 */
export function bufferLines(bytes: Buffer): string[] {
  const lines: string[] = [];
  let start = 0;
  for (;;) {
    const nl = bytes.indexOf(0x0a, start);
    if (nl === -1) {
      lines.push(bytes.toString('utf8', start));
      return lines;
    }
    lines.push(bytes.toString('utf8', start, nl));
    start = nl + 1;
  }
}
