import {
  fastCanonicalJson,
  formatIssues,
  readCanonicalLine,
  toWellFormed,
  validateEvent,
  withMembers,
  type AuditEvent,
  type CanonicalLine,
  type IngestResponse,
  type Integrity,
  type Limits,
  type StoredEvent,
} from '../../protocols/index.js';
import type { CommitBatch, CustodyInput, SeqSeen } from '../storage/types.js';
import type { Dedup } from './dedup/dedup.js';
import type { IngestContext } from './ingestor.js';
import { reportedLoss } from './integrity/agent-gap.js';
import type { ChainTracker } from './integrity/integrity.js';
import type { PipelineItem } from './item.js';
import type { Rules } from './rules/rules.js';
import type { Transforms } from './transforms/transforms.js';

/** One caller's `ingest` as it waits for its group commit. */
export interface PendingIngest {
  items: PipelineItem[];
  ctx: IngestContext;
  receivedAt: string;
  receivedMs: number;
  startedAt: number;
}

export interface Stages {
  tracker: ChainTracker;
  transforms: Transforms;
  rules: Rules;
  dedup: Dedup;
  limits: Limits;
  gatewayName: string;
  /** Ids stored by commits still in flight: duplicates, unless that commit fails (then this one fails too). */
  pending?: ((id: string) => boolean) | undefined;
  /** A rule's condition failed on an event (taken as "no match"): told here so it is not silent. */
  onRuleError?: ((rule: string, message: string) => void) | undefined;
}

/**
 * Runs integrity → transforms → rules → dedup over one group commit's
 * entries, in arrival order, marking each item; returns the batch for
 * `storage.commit` and each caller's answer. Integrity comes first because
 * it must judge the event as the agent hashed it.
 */
export async function runStages(entries: readonly PendingIngest[], s: Stages): Promise<{ batch: CommitBatch; responses: IngestResponse[] }> {
  const arrived: AuditEvent[] = [];
  for (const entry of entries) for (const item of entry.items) if (item.arrived !== undefined) arrived.push(item.arrived);
  await s.tracker.prepare(arrived);

  // The chain first, for every event in arrival order (it judges each against those before it); then repeats
  // whose id is not stored are forks, before transforms and rules see the verdict.
  const repeats = new Set<PipelineItem>();
  for (const entry of entries) {
    for (const item of entry.items) {
      if (item.event !== undefined && judgeChain(item, s)) repeats.add(item);
    }
  }
  if (repeats.size > 0) await markForks(firstOfTheirIds(entries, repeats), s);

  // Dedup candidates, in arrival order: every event that got through the stages.
  const candidates: PipelineItem[] = [];
  const candidateIds: string[] = [];
  for (const entry of entries) {
    for (const item of entry.items) {
      if (item.event === undefined) continue;
      runItemStages(item, entry, s);
      if (item.rejected === undefined) {
        candidates.push(item);
        candidateIds.push(item.event.id);
      }
    }
  }
  const dup = await s.dedup.duplicates(candidateIds, s.pending);
  for (let i = 0; i < candidates.length; i += 1) {
    if (dup[i] !== true) continue;
    const item = candidates[i] as PipelineItem;
    item.duplicate = true;
    // A rule alerts once per event, when it is stored: a retry is the same event. A chain break stays: it is this copy's.
    if (item.alerts !== undefined) item.alerts = dropRuleAlerts(item.alerts);
  }

  const events: StoredEvent[] = [];
  // The canonical JSON of events[i] where it was read from the agent's line (see storedLine), else undefined.
  const lines: (string | undefined)[] = [];
  const custody: CustodyInput[] = [];
  const seqs: SeqSeen[] = [];
  const responses: IngestResponse[] = entries.map(() => ({ accepted: 0, duplicates: 0, rejected: [] }));

  entries.forEach((entry, e) => {
    const response = responses[e] as IngestResponse;
    const { method, peer } = entry.ctx;
    const at = entry.receivedAt;
    // `ingest` differs between this caller's events only by integrity: its canonical JSON is written once per verdict.
    const ingestJson: Partial<Record<Integrity, string>> = {};
    for (const item of entry.items) {
      const event = item.event;
      const source = event?.source ?? item.source;
      // Read from the event as it arrived (and judged), before a transform or the commit drops it.
      const lost = item.arrived === undefined ? undefined : reportedLoss(item.arrived, item.integrity);
      let outcome: 'accepted' | 'duplicate' | 'rejected';
      let reason: string | undefined;
      if (item.rejected !== undefined || event === undefined) {
        outcome = 'rejected';
        // A reason may quote what was sent (a key path, say); a lone surrogate in it would fail the ledger's
        // canonical JSON, and with it the commit of every neighbour in this group.
        reason = toWellFormed(item.rejected?.reason ?? 'rejected');
        response.rejected.push({ index: item.index, error: reason });
      } else if (item.duplicate === true) {
        outcome = 'duplicate';
        response.duplicates += 1;
      } else {
        outcome = 'accepted';
        response.accepted += 1;
        const integrity = item.integrity ?? 'unchained';
        const ingest = { gateway: s.gatewayName, integrity, method, peer, receivedAt: at } as const;
        const stored = storedEvent(event, ingest, item.tags);
        item.stored = stored;
        item.arrived = undefined; // only the integrity check needed it; the commit need not hold it
        events.push(stored);
        lines.push(item.line === undefined ? undefined : storedLine(item.line, (ingestJson[integrity] ??= fastCanonicalJson(ingest)), item.tags));
        item.line = undefined;
      }
      // One object shape for every record (undefined fields are not serialised) keeps the ledger's loop fast.
      custody.push({ at, outcome, method, peer, id: item.id ?? event?.id, source, reason });
      // A seq counts as received whatever became of its event (DESIGN §4), validation's rejections included.
      if (event?.agent !== undefined && event.epoch !== undefined && event.seq !== undefined) {
        seqs.push({ agent: event.agent, epoch: event.epoch, seq: event.seq, source: event.source, at, hash: event.hash, prev: event.prev, lost });
      } else if (item.chain !== undefined) {
        seqs.push({ ...item.chain, source: source ?? item.chain.agent, at });
      }
    }
    response.rejected.sort((a, b) => a.index - b.index);
  });
  return { batch: { events, lines, custody, seqs }, responses };
}

function dropRuleAlerts(alerts: NonNullable<PipelineItem['alerts']>): PipelineItem['alerts'] {
  const left = alerts.filter((a) => a.kind !== 'rule');
  return left.length > 0 ? left : undefined;
}

/**
 * The integrity stage for one validated item (`item.event` is set): its verdict, and a chain-break alert
 * when broken. True for a repeat (see IntegrityVerdict.repeat), which markForks settles.
 */
function judgeChain(item: PipelineItem, s: Stages): boolean {
  const event = item.event as NonNullable<PipelineItem['event']>;
  // An agent's line holds the canonical JSON its hash covers: read, not rebuilt (protocols/canonical-line.ts).
  const line = item.text === undefined ? undefined : readCanonicalLine(item.text);
  item.text = undefined;
  // Judged on the event as it arrived: filling in `time` or `id` would change what the agent hashed.
  const verdict = s.tracker.check(item.arrived ?? event, line?.unhashed);
  // The stored line can be spliced from it only while no transform changes the event.
  if (s.transforms.size === 0) item.line = line;
  item.integrity = verdict.integrity;
  if (verdict.detail !== undefined) item.alerts = [{ kind: 'chain-break', detail: verdict.detail }];
  return verdict.repeat === true;
}

/** The repeats whose id no event before them in this commit has (a later copy is the commit's own duplicate). */
function firstOfTheirIds(entries: readonly PendingIngest[], repeats: ReadonlySet<PipelineItem>): PipelineItem[] {
  const seen = new Set<string>();
  const out: PipelineItem[] = [];
  for (const entry of entries) {
    for (const item of entry.items) {
      const id = item.event?.id;
      if (id === undefined) continue;
      if (repeats.has(item) && !seen.has(id)) out.push(item);
      seen.add(id);
    }
  }
  return out;
}

/**
 * A repeat of a seq the chain holds is a resend of the event stored there, with its id: dedup drops it.
 * One whose id is not stored (nor earlier in this commit, nor in a commit in flight) is a second event at
 * that position — an agent whose buffer went back (restored from a copy, or `durability: os` after a
 * power cut) and reused its seqs, or an event made up to fit — and nothing else would ever flag it: its
 * own hash is right, and no neighbour links to it. It is stored, marked broken, with a chain-break alert.
 */
async function markForks(repeats: readonly PipelineItem[], s: Stages): Promise<void> {
  const stored = await s.dedup.duplicates(
    repeats.map((item) => (item.event as NonNullable<PipelineItem['event']>).id),
    s.pending,
  );
  repeats.forEach((item, i) => {
    if (stored[i] === true) return;
    item.integrity = 'broken';
    const seq = (item.arrived ?? item.event)?.seq;
    item.alerts = [
      {
        kind: 'chain-break',
        detail: `seq ${seq}: the chain already holds this seq, and this event's id is not stored: a second event at that position (or a resend older than the dedup window)`,
      },
    ];
  });
}

/** Transforms → rules for one validated item whose chain was judged (judgeChain). */
function runItemStages(item: PipelineItem, entry: PendingIngest, s: Stages): void {
  const event = item.event as NonNullable<PipelineItem['event']>;
  if (s.transforms.size > 0) {
    const changed = s.transforms.apply(event);
    const check = validateEvent(changed, s.limits);
    if (!check.ok) {
      item.rejected = { stage: 'transform', reason: `after transforms: ${formatIssues(check.errors)}` };
      return;
    }
    item.event = changed;
  }
  if (s.rules.size > 0) {
    // The `ingest` the event is stored with (docs/config.md: rules may use it), in the same key order.
    const ingest = { gateway: s.gatewayName, integrity: item.integrity ?? 'unchained', method: entry.ctx.method, peer: entry.ctx.peer, receivedAt: entry.receivedAt };
    const r = s.rules.evaluate(item.event as AuditEvent, ingest);
    if (r.tags.length > 0) item.tags = r.tags;
    if (r.alerts.length > 0) item.alerts = [...(item.alerts ?? []), ...r.alerts.map((rule) => ({ kind: 'rule' as const, rule }))];
    if (r.droppedBy !== undefined) item.rejected = { stage: 'rule', reason: `dropped by rule ${r.droppedBy}` };
    for (const e of r.errors) s.onRuleError?.(e.rule, e.message);
  }
}

/**
 * The canonical JSON of `storedEvent(event, ingest, tags)` for an event read
 * from an agent's line: the line's text with `hash`, `ingest` and `tags`
 * spliced in, instead of serialising the stored event whole. Undefined when
 * the event brought an `ingest` or `tags` of its own (replaced, not added):
 * the storage then serialises it.
 */
function storedLine(line: CanonicalLine, ingestJson: string, tags: string[] | undefined): string | undefined {
  const members: [string, string][] = [
    ['hash', `"${line.hash}"`],
    ['ingest', ingestJson],
  ];
  if (tags !== undefined) members.push(['tags', fastCanonicalJson(tags)]);
  return withMembers(line, members);
}

/**
 * The event as stored, its keys inserted in canonical (sorted) order — so
 * is `ingest`'s — so that the storage's canonical serialisation can write
 * it without copying it first (fastCanonicalJson reuses objects already in
 * order). The gateway's own `ingest` and `tags` replace any the event had.
 */
function storedEvent(event: AuditEvent, ingest: StoredEvent['ingest'], tags: string[] | undefined): StoredEvent {
  const keys = Object.keys(event).filter((k) => k !== 'ingest' && k !== 'tags');
  keys.push('ingest');
  if (tags !== undefined) keys.push('tags');
  keys.sort();
  const source = event as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of keys) out[key] = key === 'ingest' ? ingest : key === 'tags' ? tags : source[key];
  return out as unknown as StoredEvent;
}
