import { CHAIN_ALLOWANCE_BYTES, decodeBatch, type BatchItem, type Limits } from '../../protocols/index.js';


export interface DecodedPage {
  items: BatchItem[];
  /** The seq of each item: from its value, else read from its text, else the one after the previous. */
  seqs: number[];
  firstSeq?: number;
  /** The last seq, or `after` when the page is empty. */
  lastSeq: number;
  /** Ranges inside (after, lastSeq] the page stepped over (holes in the agent's buffer). */
  skipped: [number, number][];
}

/**
 * Decodes a pulled NDJSON page line by line. Each line is checked against
 * `maxEventBytes` plus the chain fields the agent added, never the page
 * against a body limit (a page is bounded by its request: limit × line).
 * Every item gets a seq, an undecodable one too: the page's progress must
 * never depend on whether its last line could be decoded.
 */
export function decodePage(body: Buffer, after: number, limits: Limits): DecodedPage {
  // A line an agent stored may be over maxEventBytes by the fields it added: the shared chain allowance.
  const lineLimits: Limits = { ...limits, chainAllowanceBytes: CHAIN_ALLOWANCE_BYTES, maxBatchEvents: 1, maxBodyBytes: Number.MAX_SAFE_INTEGER };
  const items: BatchItem[] = [];
  const seqs: number[] = [];
  const skipped: [number, number][] = [];
  let lastSeq = after;
  let firstSeq: number | undefined;
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf(0x0a, start);
    if (end < 0) end = body.length;
    const line = body.subarray(start, end);
    start = end + 1;
    const item = decodeBatch(line, 'ndjson', lineLimits, { keepText: true })[0];
    if (item === undefined) continue; // a blank line
    item.index = items.length;
    const seq = seqOf(item.value) ?? seqOfText(line) ?? lastSeq + 1;
    firstSeq ??= seq;
    if (seq > lastSeq + 1) skipped.push([lastSeq + 1, seq - 1]);
    lastSeq = Math.max(lastSeq, seq);
    items.push(item);
    seqs.push(seq);
  }
  return { items, seqs, lastSeq, skipped, ...(firstSeq === undefined ? {} : { firstSeq }) };
}

function seqOf(value: unknown): number | undefined {
  const seq = (value as { seq?: unknown } | null | undefined)?.seq;
  return typeof seq === 'number' && Number.isSafeInteger(seq) && seq > 0 ? seq : undefined;
}

/** The seq of a line too large (or otherwise refused) to decode as an event; the page already bounds its size. */
function seqOfText(line: Buffer): number | undefined {
  try {
    return seqOf(JSON.parse(line.toString('utf8')));
  } catch {
    return undefined;
  }
}
