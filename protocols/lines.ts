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

/** `open`, the lines separated by `separator`, then `close`, written into one Buffer of the exact size. */
export function linesBuffer(lines: readonly string[], open = '', separator = '\n', close = ''): Buffer {
  let size = Buffer.byteLength(open) + Buffer.byteLength(close) + Math.max(0, lines.length - 1) * Buffer.byteLength(separator);
  for (const line of lines) size += Buffer.byteLength(line);
  const out = Buffer.allocUnsafe(size);
  let at = out.write(open, 0);
  for (let i = 0; i < lines.length; i++) {
    if (i > 0) at += out.write(separator, at);
    at += out.write(lines[i] as string, at);
  }
  out.write(close, at);
  return out;
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
