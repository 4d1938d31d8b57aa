import path from 'node:path';
import { Level } from 'level';

/** Where a connector stands in an agent's buffer: the last seq stored from that epoch. */
export interface Checkpoint {
  epoch: string;
  seq: number;
  /** The agent id the agent's /v1/status gave (matches `agent` of its events). */
  agent?: string;
}

/** A seq range recorded as lost (one `meteorzx.gap` event); never asked for again. */
export interface LostRange {
  agent: string;
  epoch: string;
  from: number;
  to: number;
  reason: string;
  at: string;
}

/**
 * The pull side's own small LevelDB in `<dataDir>/pull`: connector
 * checkpoints and lost ranges. Kept apart from the event store on purpose —
 * the storage backend may be PostgreSQL, and a checkpoint is a per-gateway
 * fact, not shared data. A checkpoint is written (synced) only after the
 * page it names is durably stored, so a crash re-pulls at most one page,
 * and dedup by id drops the repeats.
 *
 *   cp!<url>                      → Checkpoint
 *   lost!<agent>!<epoch>!<from>   → LostRange
 *   m!gapScanAt                   → ms of the last seq-gap scan (gap-watch.ts: no second alert after a restart)
 */
export class PullStore {
  private db: Level<string, string> | undefined;

  constructor(private readonly dataDir: string) {}

  async open(): Promise<void> {
    this.db = new Level<string, string>(path.join(this.dataDir, 'pull'), { valueEncoding: 'utf8' });
    await this.db.open();
  }

  async close(): Promise<void> {
    await this.db?.close();
    this.db = undefined;
  }

  async checkpoint(url: string): Promise<Checkpoint | undefined> {
    const raw = await this.require().get(`cp!${url}`);
    return raw === undefined ? undefined : (JSON.parse(raw) as Checkpoint);
  }

  async saveCheckpoint(url: string, checkpoint: Checkpoint): Promise<void> {
    await this.require().put(`cp!${url}`, JSON.stringify(checkpoint), { sync: true });
  }

  async addLost(range: LostRange): Promise<void> {
    await this.require().put(`lost!${range.agent}!${range.epoch}!${String(range.from).padStart(16, '0')}`, JSON.stringify(range), { sync: true });
  }

  /** Every lost range; with `agent`, that agent's only (a range read of its keys). */
  async lost(agent?: string): Promise<LostRange[]> {
    const prefix = agent === undefined ? 'lost!' : `lost!${agent}!`;
    const out: LostRange[] = [];
    for await (const value of this.require().values({ gte: prefix, lt: `${prefix}\uffff` })) {
      const range = JSON.parse(value) as LostRange;
      // An id that has `!` in it shares a prefix with others (`a!` with `a!b`).
      if (agent === undefined || range.agent === agent) out.push(range);
    }
    return out;
  }

  async gapScanAt(): Promise<number | undefined> {
    const raw = await this.require().get('m!gapScanAt');
    return raw === undefined ? undefined : Number(raw);
  }

  /** Not synced: a crash that loses the last few only means holes alerted then alert once more. */
  async saveGapScanAt(at: number): Promise<void> {
    await this.require().put('m!gapScanAt', String(at));
  }

  private require(): Level<string, string> {
    if (this.db === undefined) throw new Error('PullStore used before open()');
    return this.db;
  }
}
