import type { CustodyRecord } from '../../protocols/index.js';
import { isWellFormed, sha256Hex as sha256 } from '../../protocols/index.js';
import { custodyJson } from './custody-json.js';
import type { CustodyInput } from './types.js';

/**
 * The custody ledger's chaining rule, shared by every backend so that
 * `verify` means the same everywhere: each record's `hash` is the SHA-256 of
 * the canonical JSON of the record without `hash`, and `prev` is the
 * previous record's hash (absent on record 1).
 */
export interface LedgerHead {
  /** Number of the last record, 0 for an empty ledger. */
  n: number;
  hash: string | undefined;
}

export function custodyHash(record: Omit<CustodyRecord, 'hash'> | CustodyRecord): string {
  return sha256(custodyJson(record, true));
}

/** The anchor form `N:HASH` (a record number and its SHA-256 hex), as `meteorzx verify` prints the ledger head. */
export const ANCHOR_FORM = 'N:HASH (a custody record number and its 64-hex-digit hash, as verify prints "ledger head")';

/** An anchor from its `N:HASH` text; undefined when it is not one. */
export function parseAnchor(text: string): { n: number; hash: string } | undefined {
  const m = /^([1-9][0-9]{0,15}):([0-9a-f]{64})$/.exec(text.trim().toLowerCase());
  if (m === null) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? { n, hash: m[2] as string } : undefined;
}

const wellFormedOrAbsent = (v: string | undefined): boolean => v === undefined || isWellFormed(v);

/** JSON.stringify that remembers its last answer: for values that repeat in runs. */
function jsonOnce(): (value: string) => string {
  let last: string | undefined;
  let text = '';
  return (value) => {
    if (value !== last) {
      last = value;
      text = JSON.stringify(value);
    }
    return text;
  };
}

/**
 * Numbers and chains custody inputs after `head`. `eventHashes` fills the
 * `eventHash` of the accepted records, in order (the storage computes them
 * from the bytes it writes). Returns the records, their canonical JSON lines
 * (what a backend stores) and the new head.
 */
export function chainCustody(
  inputs: readonly CustodyInput[],
  head: LedgerHead,
  eventHashes: readonly string[],
): { records: CustodyRecord[]; lines: string[]; head: LedgerHead } {
  const records: CustodyRecord[] = new Array(inputs.length);
  const lines: string[] = new Array(inputs.length);
  let { n, hash: prev } = head;
  let accepted = 0;
  // The records of one caller share at, method and peer: each is written as JSON once per run of equal values.
  const json = { at: jsonOnce(), method: jsonOnce(), peer: jsonOnce(), source: jsonOnce() };
  // The head's hash comes from storage: written as JSON; every later prev is a hash this loop made.
  let prevJson = prev === undefined ? undefined : JSON.stringify(prev);
  for (let i = 0; i < inputs.length; i += 1) {
    const input = inputs[i] as CustodyInput;
    n += 1;
    let eventHash: string | undefined;
    if (input.outcome === 'accepted') {
      eventHash = eventHashes[accepted];
      accepted += 1;
      if (eventHash === undefined) throw new Error('more accepted custody records than stored events');
    }
    // Keys in canonical (RFC 8785) order and one shape for every record (undefined fields are not written).
    const record: CustodyRecord = {
      at: input.at,
      eventHash,
      hash: undefined as unknown as string,
      id: input.id,
      method: input.method,
      n,
      outcome: input.outcome,
      peer: input.peer,
      prev,
      reason: input.reason,
      source: input.source,
    };
    if (input.outcome === 'retained') {
      record.from = input.from;
      record.to = input.to;
      record.before = input.before;
    }
    const plain =
      input.outcome !== 'retained' && typeof input.at === 'string' && typeof input.peer === 'string' && isWellFormed(input.at) && isWellFormed(input.peer) &&
      wellFormedOrAbsent(input.id) && wellFormedOrAbsent(input.source) && wellFormedOrAbsent(input.reason);
    if (plain) {
      // The hot path: the canonical text written once, in two halves around "hash" (which sorts after
      // "eventHash" and before "id"), so the hashed text and the stored line share all their pieces.
      // eventHash is SHA-256 hex (the storage's own), outcome one of three words: nothing in them to escape.
      // (A `retained` record, rare, takes the generic path below: it holds fields this one does not write.)
      const head = `{"at":${json.at(input.at)}${eventHash === undefined ? '' : `,"eventHash":"${eventHash}"`}`;
      const tail =
        `${input.id === undefined ? '' : `,"id":${JSON.stringify(input.id)}`},"method":${json.method(input.method)},"n":${n}` +
        `,"outcome":"${input.outcome}","peer":${json.peer(input.peer)}${prevJson === undefined ? '' : `,"prev":${prevJson}`}` +
        `${input.reason === undefined ? '' : `,"reason":${JSON.stringify(input.reason)}`}${input.source === undefined ? '' : `,"source":${json.source(input.source)}`}}`;
      const hash = sha256(head + tail);
      record.hash = hash;
      lines[i] = `${head},"hash":"${hash}"${tail}`;
    } else {
      const hash = sha256(custodyJson(record, true));
      record.hash = hash;
      lines[i] = custodyJson(record);
    }
    records[i] = record;
    prev = record.hash;
    prevJson = `"${record.hash}"`;
  }
  if (accepted !== eventHashes.length) throw new Error(`${eventHashes.length} stored events but ${accepted} accepted custody records`);
  return { records, lines, head: { n, hash: prev } };
}

/** What is wrong with one record given the one before it, or undefined when it chains. */
export function checkCustodyRecord(record: CustodyRecord, before: LedgerHead): string | undefined {
  if (record.n !== before.n + 1) return `record number ${record.n} follows ${before.n}`;
  if (record.prev !== before.hash) return 'prev does not match the previous record hash';
  const expected = custodyHash(record);
  if (expected !== record.hash) return `hash does not match content (expected ${expected})`;
  return undefined;
}
