import type { Logger } from 'pino';
import { sha256Hex } from '../../../protocols/index.js';
import type { CustodyRecord, SourceStatus } from '../../../protocols/index.js';
import { tallySources } from '../source-counts.js';
import { commitHex, parseCommitHex, quarantineKey } from './keys.js';
import type { LevelDb } from './level-storage.js';

/** One registry key the store found damaged and mended (docs/operations.md, "A damaged registry key"). */
export interface RegistryRepair {
  /** `source`: an `rs!` key, counted again from the ledger; `epoch`: an `ra!` key, started afresh. */
  kind: 'source' | 'epoch';
  /** The damaged key. */
  key: string;
  /** Where its damaged bytes are kept, as they were. */
  quarantinedAs: string;
  detail: string;
}

export interface RegistryRepairOptions {
  /** Reads one commit's custody records (undefined: no block; throws when it cannot be decoded). */
  custodyBlock: (commit: number) => Promise<CustodyRecord[] | undefined>;
  logger?: Pick<Logger, 'error' | 'warn'> | undefined;
  /** Told of each repair once (the gateway raises a `registry-repaired` alert). */
  onRepair?: ((repair: RegistryRepair) => void) | undefined;
}

/** Repairs remembered, so that a key read again before a commit rewrites it is not reported again. */
const MAX_REMEMBERED = 10_000;

/**
 * Mends a registry key whose value does not decode, where a commit needs it.
 * Before, such a key failed every commit that touched it — its source's
 * events, and every other event group-committed with them — for good, and
 * a damaged `rs!` key of a source counted again at open (after a crash)
 * kept the gateway from starting at all.
 *
 * Either way the damaged bytes are first copied, as they were, to a
 * `q!<key>!<hash>` key (content-addressed: doing it twice writes the same
 * key), and the repair is logged at error level and reported (`onRepair`):
 *  - `rs!<source>` (counts): counted again from the ledger — every custody
 *    block holding a record of the source (`cs!` keys) — exactly what
 *    `meteorzx verify` checks them against. Its cost is one block read per
 *    commit the source had, once.
 *  - `ra!<agent>!<epoch>` (seqs, gaps, chain head): custody records carry no
 *    seq, so it cannot be counted again; the epoch starts afresh, as a new
 *    one: the seqs below the next one to arrive show as a gap (backfill, or
 *    a pull, fills it from the agent's buffer), and that event is checked on
 *    its content only. Over-reporting a loss, never hiding one.
 * The key itself is rewritten by the next commit (epoch) or registry
 * checkpoint (source) that names it.
 */
export class RegistryRepairer {
  private readonly done = new Set<string>();

  constructor(
    private readonly db: () => LevelDb,
    private readonly opts: RegistryRepairOptions,
  ) {}

  /** The counts of `source` as of commit `upTo`, from the ledger (undefined: it has no record up to there). */
  async source(key: string, source: string, damaged: Buffer, upTo: number): Promise<SourceStatus | undefined> {
    let state: SourceStatus | undefined;
    let unreadable = 0;
    for await (const k of this.db().keys({ gt: `cs!${source}!`, lte: `cs!${source}!${commitHex(upTo)}` })) {
      const commit = parseCommitHex(k.slice(-16));
      const records = await this.opts.custodyBlock(commit).catch(() => undefined);
      if (records === undefined) {
        unreadable += 1;
        continue;
      }
      const own = records.filter((r) => r.source === source);
      state = tallySources(own, () => state).get(source) ?? state;
    }
    const counted = state === undefined ? 'no record of it in the ledger' : `${state.accepted} accepted, ${state.duplicates} duplicates, ${state.rejected} rejected`;
    const short = unreadable === 0 ? '' : `; ${unreadable} of its custody blocks cannot be read and are left out (meteorzx verify names them)`;
    await this.report('source', key, damaged, `its counts are taken again from the ledger (${counted}${short})`);
    return state;
  }

  /** Quarantines a damaged epoch state; the caller then takes the epoch as new. */
  async epoch(key: string, damaged: Buffer): Promise<void> {
    await this.report('epoch', key, damaged, 'its seq bookkeeping and chain head start afresh: seqs below the next one received show as a gap until backfill or a pull fills it');
  }

  private async report(kind: RegistryRepair['kind'], key: string, damaged: Buffer, what: string): Promise<void> {
    const quarantinedAs = quarantineKey(key, sha256Hex(damaged).slice(0, 16));
    if (this.done.has(quarantinedAs)) return;
    // Kept before anything replaces the key: the bytes are evidence (what damaged it, and how).
    await this.db().put(quarantinedAs, damaged);
    if (this.done.size >= MAX_REMEMBERED) this.done.clear();
    this.done.add(quarantinedAs);
    const detail = `registry key ${key} was damaged (it held ${JSON.stringify(damaged.toString('latin1').slice(0, 40))}); its bytes are kept under ${quarantinedAs}, and ${what}`;
    this.opts.logger?.error({ key, quarantinedAs }, `registry: ${detail}`);
    this.opts.onRepair?.({ kind, key, quarantinedAs, detail });
  }
}
