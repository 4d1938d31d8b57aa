import type { Logger } from 'pino';
import { GAP_TYPE, type AuditEvent, type EpochStatus, type PullCommand } from '../../protocols/index.js';
import type { GatewayMetrics } from '../metrics.js';
import type { Ingestor } from '../pipeline/ingestor.js';
import type { RaiseAlert } from '../alerts/alert-sink.js';
import type { GapWatch } from '../alerts/gap-watch.js';
import type { GoneRange, PullConnector } from './connector.js';
import type { LostRange, PullStore } from './pull-store.js';

export interface BackfillOptions {
  /** Every (agent, epoch) of the registry, with its open holes (storage.agentEpochs: not the per-source counts). */
  epochs: () => Promise<EpochStatus[]>;
  store: PullStore;
  ingestor: Ingestor;
  /** The configured HTTP connectors; a hole goes to the one whose agent id matches. */
  connectors: () => readonly PullConnector[];
  /** Publishes a command on audit/<agent>/cmd (the gateway's broker); absent without MQTT. */
  command?: (agent: string, command: PullCommand) => Promise<void>;
  /** Whether the agent is connected and listening for commands; a hole is only asked for (and a try counted) then. */
  online?: (agent: string) => Promise<boolean>;
  /** ms a hole stays open before it is asked for. */
  graceMs: number;
  /** Command-channel requests for one hole, or looks at a hole in the agent's buffer, before it is recorded as lost. */
  tries: number;
  alerter: RaiseAlert;
  /** `alerts.gaps`: told each scan's holes, it raises `seq-gap` for those open past the grace. */
  gapWatch?: GapWatch | undefined;
  /** Whether holes are pulled again (`backfill.enabled`); false: the scan only feeds `gapWatch`. Default true. */
  repair?: boolean;
  metrics?: GatewayMetrics | undefined;
  logger: Logger;
  now?: () => number;
}

/** A range asked for over the command channel, or seen as a hole in the agent's buffer: how often, and when last. */
interface Asked {
  agent: string;
  epoch: string;
  from: number;
  to: number;
  times: number;
  last: number;
}

/**
 * Repairs holes in agents' seqs (DESIGN §4, issue 5). Each scan reads the
 * registry's open gaps, hands them to the `seq-gap` alert (alerts.gaps,
 * gap-watch.ts) first; a gap older than the grace period, and not one the
 * agent's own gap event reported lost, is pulled again —
 * over HTTP when a `pullFrom` connector serves that agent, else by a pull
 * command on the agent's own MQTT link. Events that arrive close the gap in
 * the registry by themselves. A range the agent can no longer serve (a 410,
 * an answer without it, or a hole in its buffer, that no gap event of the
 * agent's names after `tries` looks; no re-send after `tries` commands) becomes one
 * stored `meteorzx.gap` event with a deterministic id — recorded twice, it
 * is still one — plus an alert, and is never asked for again.
 */
export class Backfill {
  /** Ranges asked for (or looked at), by kind, agent and epoch. */
  private readonly asked = new Map<string, Asked[]>();
  /** The pull of each agent's log that this scan's looks at holes made (one per agent, however many holes). */
  private readonly pulledThisScan = new Map<PullConnector, Promise<void>>();
  /** This scan's one identification of the connectors whose agent id is not yet known (see connectorFor). */
  private identifiedThisScan: Promise<unknown> | undefined;
  /** Agents whose repair failed this scan (down, unreachable, hung): their other holes wait for the next scan. */
  private readonly failedThisScan = new Set<string>();
  private scanning: Promise<void> | undefined;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly options: BackfillOptions) {
    this.now = options.now ?? Date.now;
  }

  /** One pass over the registry; concurrent calls share the pass in progress. */
  scan(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.scanning ??= this.doScan().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  /** The scan in progress looks at no further hole, and no scan starts (the gateway is stopping). */
  stop(): void {
    this.stopped = true;
  }

  /** Resolves when the scan in progress (if any) has finished. */
  idle(): Promise<void> {
    return this.scanning?.catch(() => undefined) ?? Promise.resolve();
  }

  private async doScan(): Promise<void> {
    const { graceMs, logger } = this.options;
    this.pulledThisScan.clear();
    this.identifiedThisScan = undefined;
    this.failedThisScan.clear();
    const [epochs, lost] = await Promise.all([this.options.epochs(), this.options.store.lost()]);
    const now = this.now();
    if (this.options.gapWatch !== undefined) {
      this.options.gapWatch.scan(epochs, lost, now);
      await this.options.store.saveGapScanAt(now);
    }
    if (this.options.repair === false) return;
    const losses = new LossIndex(lost);
    for (const epoch of epochs) {
      for (const gap of epoch.gaps) {
        // The agent's own gap event named these seqs lost: it no longer has them, and the loss is recorded.
        if (gap.reportedByAgent === true) continue;
        if (now - Date.parse(gap.since) < graceMs) continue;
        for (const [from, to] of losses.subtract(epoch.agent, epoch.epoch, [gap.from, gap.to])) {
          if (this.stopped) return;
          // One failed repair per agent and scan: a hung agent would otherwise cost a request timeout per hole.
          if (this.failedThisScan.has(epoch.agent)) continue;
          try {
            await this.repair(epoch.agent, epoch.epoch, from, to);
          } catch (err) {
            // The agent is down or unreachable: not a loss yet, the next scan asks again.
            this.failedThisScan.add(epoch.agent);
            logger.warn({ agent: epoch.agent, epoch: epoch.epoch, from, to, err: (err as Error).message }, 'backfill failed; will retry');
          }
        }
      }
    }
    this.forgetClosed(epochs);
  }

  /** Drops the counts of ranges no open hole overlaps any more: filled, or reported lost by the agent. */
  private forgetClosed(epochs: readonly EpochStatus[]): void {
    if (this.asked.size === 0) return;
    // By agent and epoch: a scan of 100k sources must not search the list once per range asked for.
    const byEpoch = new Map(epochs.map((e) => [`${e.agent}\u0000${e.epoch}`, e]));
    for (const [key, list] of this.asked) {
      const left = list.filter((a) => byEpoch.get(`${a.agent}\u0000${a.epoch}`)?.gaps.some((g) => g.reportedByAgent !== true && g.from <= a.to && g.to >= a.from) ?? false);
      if (left.length === 0) this.asked.delete(key);
      else this.asked.set(key, left);
    }
  }

  /**
   * One more look at a range, at most one per `grace`: after `tries` looks
   * the range is recorded lost, for `why(looks)`; before that, `ask` runs
   * (if given) and the look is counted. True when it was counted.
   *
   * Once per grace for the hole, not for each range it shows: a hole being
   * re-sent shrinks from scan to scan (1..22480, then 778..22480, …), and
   * asking for each new remainder at once re-sent the whole rest every
   * `backfill.every` while the first answer was still arriving. A range
   * that overlaps one looked at within the grace waits; a remainder starts
   * its own count of looks (the agent is answering).
   */
  private async countDown(kind: 'cmd' | 'hole' | 'gone', range: Omit<Asked, 'times' | 'last'>, why: (looks: number) => string, ask?: () => Promise<void>): Promise<boolean> {
    const { agent, epoch, from, to } = range;
    const key = `${kind}\u0000${agent}\u0000${epoch}`;
    const list = this.asked.get(key) ?? [];
    const overlapping = list.filter((a) => a.from <= to && a.to >= from);
    if (overlapping.some((a) => this.now() - a.last < this.options.graceMs)) return false;
    const before = overlapping.find((a) => a.from === from && a.to === to);
    const others = list.filter((a) => !overlapping.includes(a));
    if (before !== undefined && before.times >= this.options.tries) {
      this.setAsked(key, others);
      await this.recordLoss(agent, { epoch, from, to, reason: why(before.times) });
      return false;
    }
    await ask?.();
    this.setAsked(key, [...others, { ...range, times: (before?.times ?? 0) + 1, last: this.now() }]);
    return true;
  }

  private setAsked(key: string, list: Asked[]): void {
    if (list.length === 0) this.asked.delete(key);
    else this.asked.set(key, list);
  }

  private async repair(agent: string, epoch: string, from: number, to: number): Promise<void> {
    const connector = await this.connectorFor(agent);
    if (connector !== undefined) {
      const result = await connector.pullRange({ after: from - 1, until: to, epoch });
      this.options.logger.info({ agent, epoch, from, to, pulled: result.pulled, gone: result.gone.length }, 'backfilled over HTTP');
      // What the agent no longer holds may be a loss it recorded itself with a gap event that sits above the
      // range, not yet here (a pull-only agent's drop-oldest): recorded at once, it was recorded twice.
      for (const gone of result.gone) await this.awaitAgentRecord(agent, gone, connector, 'gone');
      for (const hole of result.holes) {
        const lo = Math.max(hole.from, from);
        const hi = Math.min(hole.to, to);
        if (lo <= hi) await this.awaitAgentRecord(agent, { ...hole, from: lo, to: hi }, connector, 'hole');
      }
      return;
    }
    const command = this.options.command;
    if (command === undefined) return;
    // An offline agent cannot answer: asking it would only count down to a false loss.
    if (this.options.online !== undefined && !(await this.options.online(agent))) return;
    const range = { agent, epoch, from, to };
    const why = (looks: number): string => `not re-sent after ${looks} pull command(s) on audit/${agent}/cmd`;
    const asked = await this.countDown('cmd', range, why, () => command(agent, { op: 'pull', after: from - 1, until: to, epoch }));
    if (asked) this.options.logger.info(range, 'backfill requested over the command channel');
  }

  /**
   * The connector serving `agent`. Connectors whose agent id is not known yet are asked for it once per
   * scan, all at once: asked in turn for each hole, one agent that accepts and never answers held the
   * scan for its request timeout per hole of every agent no connector serves (minutes per scan).
   */
  private async connectorFor(agent: string): Promise<PullConnector | undefined> {
    const connectors = this.options.connectors();
    const known = connectors.find((c) => c.agentId === agent);
    if (known !== undefined) return known;
    this.identifiedThisScan ??= Promise.all(connectors.filter((c) => c.agentId === null).map((c) => c.identify()));
    await this.identifiedThisScan;
    return connectors.find((c) => c.agentId === agent);
  }

  /**
   * A range the agent no longer serves: a hole in its buffer (damage), or
   * gone (a 410: dropped, deleted by retention, or of an epoch it no longer
   * is). The agent appends a
   * `meteorzx.gap` for the part it had not yet delivered, and that event
   * marks the registry's hole `reportedByAgent` when it arrives, so the
   * scan stops asking. Seqs the agent had delivered, yet missing here, get
   * no gap event from anyone: so a hole still asked for after `tries`
   * looks, one `grace` apart, is recorded here as a loss. Each look runs
   * the agent's connector first: an agent that only serves pulls hands
   * over its gap event at the next run, which its schedule may put after
   * the last look (a second record of the loss).
   */
  private async awaitAgentRecord(agent: string, hole: GoneRange, connector: PullConnector, kind: 'hole' | 'gone'): Promise<void> {
    const range = { agent, epoch: hole.epoch, from: hole.from, to: hole.to };
    const why = (looks: number): string =>
      kind === 'hole'
        ? `a hole in the agent's buffer that no meteorzx.gap of the agent's named in ${looks} look(s): delivered before the agent's buffer lost it, yet not stored here`
        : `${hole.reason}; no meteorzx.gap of the agent's named it in ${looks} look(s)`;
    const pullLog = (): Promise<void> => {
      let pulled = this.pulledThisScan.get(connector);
      if (pulled === undefined) {
        // One attempt, as POST /v1/pull makes (retry waits must not hold the scan); one that failed (the agent
        // went away) is no look: the next scan asks again.
        pulled = connector.run({ manual: true }).then((result) => {
          if (result === undefined) throw new Error(`pull of ${connector.url} failed or was cut short`);
        });
        this.pulledThisScan.set(connector, pulled);
      }
      return pulled;
    };
    const counted = await this.countDown(kind, range, why, pullLog);
    if (counted) this.options.logger.info({ ...range, kind }, "backfill: a range the agent no longer serves; waiting for the agent's own gap event");
  }

  /** Stores one `meteorzx.gap` event for the range, marks it lost, alerts. */
  async recordLoss(agent: string, gone: GoneRange): Promise<void> {
    const { epoch, from, to, reason } = gone;
    const at = new Date(this.now()).toISOString();
    const event: AuditEvent = {
      // Deterministic: a loss recorded again (a crash between store and mark) dedups to one record.
      id: `meteorzx.gap:${agent}:${epoch}:${from}-${to}`,
      type: GAP_TYPE,
      source: agent,
      time: at,
      outcome: 'failure',
      data: { agent, epoch, from, to, count: to - from + 1, reason, detectedBy: 'gateway-backfill' },
    };
    const answer = await this.options.ingestor.ingest([{ index: 0, value: event, bytes: JSON.stringify(event).length }], { method: 'pull', peer: 'backfill' });
    if (answer.rejected.length > 0) throw new Error(`gap record rejected: ${answer.rejected[0]?.error ?? ''}`);
    const lost: LostRange = { agent, epoch, from, to, reason, at };
    await this.options.store.addLost(lost);
    this.options.metrics?.gapsLost.inc();
    this.options.alerter.raise({ kind: 'gap-lost', agent, epoch, from, to, detail: `agent ${agent} epoch ${epoch}: seqs ${from}..${to} lost (${reason})`, at });
  }
}

type SeqSpan = { from: number; to: number };

/** [from, to] minus the lost ranges, as disjoint sub-ranges. */
export function subtract(range: [number, number], lost: readonly SeqSpan[]): [number, number][] {
  return subtractMerged(range, mergeSpans(lost));
}

/** Sorted by `from`, overlapping and adjacent ranges joined. */
function mergeSpans(spans: readonly SeqSpan[]): SeqSpan[] {
  const out: SeqSpan[] = [];
  for (const s of [...spans].sort((a, b) => a.from - b.from)) {
    const last = out[out.length - 1];
    if (last !== undefined && s.from <= last.to + 1) last.to = Math.max(last.to, s.to);
    else out.push({ from: s.from, to: s.to });
  }
  return out;
}

/**
 * The recorded losses of every (agent, epoch), merged (mergeSpans), once
 * per scan: a scan looked through the whole list for each hole, so its cost
 * grew with holes × losses of every agent.
 */
export class LossIndex {
  private readonly byEpoch = new Map<string, SeqSpan[]>();

  constructor(lost: readonly (SeqSpan & { agent: string; epoch: string })[]) {
    const grouped = new Map<string, SeqSpan[]>();
    for (const l of lost) {
      const key = `${l.agent}\u0000${l.epoch}`;
      const list = grouped.get(key);
      if (list === undefined) grouped.set(key, [l]);
      else list.push(l);
    }
    for (const [key, list] of grouped) this.byEpoch.set(key, mergeSpans(list));
  }

  /** [from, to] minus what is recorded lost of the agent's epoch. */
  subtract(agent: string, epoch: string, range: [number, number]): [number, number][] {
    return subtractMerged(range, this.byEpoch.get(`${agent}\u0000${epoch}`) ?? []);
  }
}

/** `merged` as mergeSpans leaves it: a binary search finds the first that can overlap. */
function subtractMerged([from, to]: [number, number], merged: readonly SeqSpan[]): [number, number][] {
  let lo = 0;
  let hi = merged.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((merged[mid] as SeqSpan).to < from) lo = mid + 1;
    else hi = mid;
  }
  const parts: [number, number][] = [];
  let next = from;
  for (let i = lo; i < merged.length && next <= to; i += 1) {
    const l = merged[i] as SeqSpan;
    if (l.from > to) break;
    if (l.from > next) parts.push([next, l.from - 1]);
    next = Math.max(next, l.to + 1);
  }
  if (next <= to) parts.push([next, to]);
  return parts;
}
