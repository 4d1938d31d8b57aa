import type { CustodyRecord } from '../../../protocols/index.js';
import { sha256Hex as sha256 } from '../../../protocols/index.js';
import { checkCustodyRecord, custodyHash, type LedgerHead } from '../ledger.js';
import type { VerifyProblem, VerifyReport } from '../types.js';
import { decodeCustodyBlock, decodeLines } from './block-codec.js';
import { blockKey, custodyKey, HEAD_KEY, parseCommitHex, retainedKey } from './keys.js';
import type { LevelHead } from './level-commit.js';
import type { LevelDb } from './level-storage.js';

/** Problems listed in a report; counting goes on past it. */
const MAX_PROBLEMS = 100;

/**
 * Walks the custody ledger in order, recomputing every record's hash and
 * its link to the one before, and checks each commit's stored events
 * against the `eventHash` its accepted records hold: any change to stored
 * data after ingest — an event, a record, a removed or added block — is
 * reported with its location. Blocks deleted by retention leave a marker
 * and are expected to be gone.
 */
export async function verifyLevel(
  db: LevelDb,
  opts: { source?: string; onProgress?: (done: number) => void },
): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  let found = 0;
  const report = (p: VerifyProblem): void => {
    found += 1;
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };
  let head: LedgerHead | undefined = { n: 0, hash: undefined };
  let ledgerRecords = 0;
  let events = 0;

  // The head first, and the walk up to its commit: on a running gateway, commits land while the ledger
  // is walked, and a head read afterwards would name records the walk never reached.
  const rawHead = (await db.get(HEAD_KEY)) as Buffer | undefined;
  const stored = rawHead === undefined ? { commit: 0, n: 0, hash: undefined } : (JSON.parse(rawHead.toString()) as LevelHead);
  for await (const [key, value] of db.iterator({ gt: 'k!', lte: custodyKey(stored.commit) })) {
    const commit = parseCommitHex(key.slice(2));
    let records: CustodyRecord[];
    try {
      records = await decodeCustodyBlock(commit, value);
    } catch (err) {
      report({ kind: 'ledger', where: `after ${head?.n ?? '?'}`, detail: (err as Error).message });
      head = undefined; // the next readable record starts a new reference point
      continue;
    }
    for (const record of records) {
      ledgerRecords += 1;
      const problem =
        head === undefined
          ? custodyHash(record) === record.hash
            ? undefined
            : 'hash does not match content'
          : checkCustodyRecord(record, head);
      if (problem !== undefined) report({ kind: 'ledger', where: String(record.n), detail: problem });
      head = { n: record.n, hash: record.hash };
    }
    events += await verifyBlock(db, commit, records, opts.source, report);
    opts.onProgress?.(ledgerRecords);
  }

  if (head !== undefined && (stored.n !== head.n || stored.hash !== head.hash)) {
    report({ kind: 'ledger', where: String(head.n), detail: `ledger ends at record ${head.n} but its head says ${stored.n}` });
  }
  // Records past the head are new commits if the head has moved since (a running gateway); if it has not, they were added.
  const headNow = (await db.get(HEAD_KEY)) as Buffer | undefined;
  if (headNow === undefined || headNow.equals(rawHead ?? Buffer.alloc(0))) {
    for await (const key of db.keys({ gt: custodyKey(stored.commit), lt: 'k"', limit: 1 })) {
      report({ kind: 'ledger', where: `block ${parseCommitHex(key.slice(2))}`, detail: `custody block past the ledger head (commit ${stored.commit})` });
    }
  }
  return { ok: found === 0, ledgerRecords, events, problems };
}

/** Checks one commit's event block against its accepted custody records; returns events checked. */
async function verifyBlock(
  db: LevelDb,
  commit: number,
  records: readonly CustodyRecord[],
  source: string | undefined,
  report: (p: VerifyProblem) => void,
): Promise<number> {
  const accepted = records.filter((r) => r.outcome === 'accepted');
  if (accepted.length === 0) return 0;
  const wanted = (r: CustodyRecord): boolean => source === undefined || r.source === source;
  const where = (r: CustodyRecord): string => r.id ?? `ledger ${r.n}`;
  const raw = (await db.get(blockKey(commit))) as Buffer | undefined;
  if (raw === undefined) {
    if ((await db.get(retainedKey(commit))) !== undefined) return 0;
    for (const r of accepted.filter(wanted)) report({ kind: 'event', where: where(r), detail: 'stored event is missing' });
    return 0;
  }
  let lines: string[];
  try {
    lines = await decodeLines(raw, `event block ${commit}`);
  } catch (err) {
    for (const r of accepted.filter(wanted)) report({ kind: 'event', where: where(r), detail: (err as Error).message });
    return 0;
  }
  if (lines.length !== accepted.length) {
    report({ kind: 'event', where: `block ${commit}`, detail: `${lines.length} stored events, ${accepted.length} in the ledger` });
  }
  let checked = 0;
  accepted.forEach((r, i) => {
    if (!wanted(r)) return;
    const line = lines[i];
    checked += 1;
    if (line === undefined) return;
    if (sha256(line) !== r.eventHash) {
      report({ kind: 'event', where: where(r), detail: `stored event differs from its hash in ledger record ${r.n}` });
    }
  });
  return checked;
}
