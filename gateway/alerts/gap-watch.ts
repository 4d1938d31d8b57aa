import type { EpochStatus } from '../../protocols/index.js';
import { LossIndex } from '../pull/backfill.js';
import type { Alert } from './alert.js';

export interface GapWatchOptions {
  /** ms a hole must stay open before it alerts (`backfill.grace`). */
  graceMs: number;
  raise: (alert: Alert) => void;
}

/** A seq range already recorded lost (backfill's `pulls.lost`); its own `gap-lost` alert said so. */
export interface RecordedLoss {
  agent: string;
  epoch: string;
  from: number;
  to: number;
}

/**
 * The `seq-gap` alert (DESIGN §1: alerts on gaps; docs/config.md
 * `alerts.gaps`): a hole in an agent's seqs that is still open after the
 * grace period raises one alert. Holes that open and close within it — pushes
 * of several batches in flight land out of order — say nothing.
 *
 * It reads the registry's gaps on each backfill scan. Once per hole: holes
 * open above the epoch's highest seq, so a later hole is always higher; per
 * (agent, epoch) the highest seq alerted is kept, and a gap ending at or
 * below it is what is left of an alerted hole (partly filled, or split by a
 * late event), not a new one. Only epochs with an open hole are kept, so
 * memory follows the holes. Across a restart, the time of the last scan
 * before it (`restore`, kept in `<dataDir>/pull`) stands in for those marks:
 * a hole whose grace had ended by then was alerted then. And a hole that
 * opened before this start counts its grace from the start: while the
 * gateway was down nothing could fill it — an agent's batches in flight at
 * a crash are re-sent once it reconnects, which its backoff may put well
 * after the start — so without this a hole the crash left would alert at
 * the first scan however quickly it was filled.
 *
 * Not alerted: seqs the agent's own verified `meteorzx.gap` event names
 * lost (`reportedByAgent`: the loss is on record as that stored event — a
 * rule on `type == "meteorzx.gap"` alerts on it), and holes wholly recorded
 * lost by backfill (their `gap-lost` alert said it).
 */
export class GapWatch {
  private alertedTo = new Map<string, number>();
  private scannedBefore = -Infinity;
  private startedAt = -Infinity;

  constructor(private readonly options: GapWatchOptions) {}

  /**
   * At start: the time (ms) of the last scan before it, if any (holes past their grace by then were alerted
   * by it), and of the start (holes open before it are given their grace from then).
   */
  restore(lastScanAt: number | undefined, startedAt?: number): void {
    if (lastScanAt !== undefined) this.scannedBefore = lastScanAt;
    if (startedAt !== undefined) this.startedAt = startedAt;
  }

  /** Epochs with a hole being watched. */
  get size(): number {
    return this.alertedTo.size;
  }

  scan(epochs: readonly EpochStatus[], lost: readonly RecordedLoss[], now: number): void {
    const next = new Map<string, number>();
    const losses = new LossIndex(lost);
    for (const epoch of epochs) {
      if (epoch.gaps.length === 0) continue;
      const key = `${epoch.agent}\u0000${epoch.epoch}`;
      const before = this.alertedTo.get(key) ?? 0;
      let mark = before;
      let open = false;
      for (const gap of epoch.gaps) {
        if (gap.reportedByAgent === true) continue;
        open = true;
        if (gap.to <= before) continue;
        const opened = Date.parse(gap.since);
        if (now < Math.max(opened, this.startedAt) + this.options.graceMs) continue;
        mark = Math.max(mark, gap.to);
        // Alerted before the restart, by the scan at `scannedBefore` or an earlier one.
        if (opened + this.options.graceMs <= this.scannedBefore) continue;
        const from = Math.max(gap.from, before + 1);
        // Wholly recorded lost already: its gap-lost alert said so.
        if (losses.subtract(epoch.agent, epoch.epoch, [from, gap.to]).length === 0) continue;
        this.options.raise({
          kind: 'seq-gap',
          agent: epoch.agent,
          epoch: epoch.epoch,
          from,
          to: gap.to,
          since: gap.since,
          detail: `agent ${epoch.agent} epoch ${epoch.epoch}: seqs ${from}..${gap.to} missing since ${gap.since}`,
          at: new Date(now).toISOString(),
        });
      }
      if (open) next.set(key, mark);
    }
    this.alertedTo = next;
  }
}
