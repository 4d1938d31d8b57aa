import { mergeRanges, type NamedRange } from './gap-fold.js';
import type { LostRange } from './space-plan.js';

/**
 * Undelivered events a release deleted while the push sink held them in
 * memory (read into its window: in flight, acked past an earlier batch, or
 * awaiting a retry). They are not lost: the sink sends them from memory
 * until the gateway acks them. So a gap event does not name them; the
 * buffer records their ranges instead (`m!held`, in the same batch as the
 * deletion), an ack past a range clears it, and a range still recorded at
 * the next open — the process stopped before the gateway acked it — is
 * named lost then, since nothing holds those events any more.
 */
export interface HeldRanges {
  /** Ranges the push sink holds, of this process's life. */
  live: NamedRange[];
  /** Ranges recorded by an earlier life, to be named lost by the next commit. */
  stale: NamedRange[];
}

export const NO_HELD: HeldRanges = Object.freeze({ live: [], stale: [] }) as HeldRanges;

export function parseHeld(json: string | undefined): NamedRange[] {
  try {
    const v = JSON.parse(json ?? '') as unknown;
    if (Array.isArray(v)) {
      return v.filter((r): r is NamedRange => Number.isSafeInteger((r as NamedRange).from) && Number.isSafeInteger((r as NamedRange).to) && typeof (r as NamedRange).reason === 'string');
    }
  } catch {
    // Absent (the usual case) or unreadable: nothing is held.
  }
  return [];
}

/**
 * Splits what a release deletes undelivered into what is lost (named by a
 * gap event) and what the push sink holds (seqs ≤ `heldUpTo`).
 */
export function splitHeld(lost: readonly LostRange[], heldUpTo: number): { lost: LostRange[]; held: NamedRange[] } {
  const out: LostRange[] = [];
  const held: NamedRange[] = [];
  for (const r of lost) {
    if (r.from <= heldUpTo) held.push({ from: r.from, to: Math.min(r.to, heldUpTo), reason: r.reason });
    if (r.to > heldUpTo) {
      const from = Math.max(r.from, heldUpTo + 1);
      out.push({ from, to: r.to, count: r.to - from + 1, reason: r.reason });
    }
  }
  return { lost: out, held };
}

/** The live ranges once `ackTo` is acked (a range the ack passes is delivered), plus `added`. */
export function nextHeld(live: readonly NamedRange[], ackTo: number, added: readonly NamedRange[]): NamedRange[] {
  const left: NamedRange[] = [];
  for (const r of live) {
    if (r.to <= ackTo) continue;
    left.push(r.from <= ackTo ? { ...r, from: ackTo + 1 } : r);
  }
  return added.length === 0 ? left : mergeRanges([...left, ...added]);
}
