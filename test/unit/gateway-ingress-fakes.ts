import {
  DEFAULT_LIMITS,
  deterministicId,
  formatIssues,
  validateEvent,
  type BatchItem,
  type CustodyRecord,
  type IngestResponse,
  type EpochStatus,
  type Limits,
  type SourcesResponse,
  type StoredEvent,
} from '../../protocols/index.js';
import type { IngestContext, Ingestor } from '../../gateway/pipeline/ingestor.js';
import type { CustodyPage, CustodyQuery, EventPage, EventQuery, Storage, VerifyReport } from '../../gateway/storage/types.js';

/**
 * An in-memory stand-in for the pipeline + storage, enough to test the
 * ingress and the HTTP API on their own: validates, dedups by id, keeps
 * custody records. `failNext` makes the next ingests throw.
 */
export class FakeGatewayCore implements Ingestor, Pick<Storage, 'query' | 'custodyPage' | 'sources' | 'verify'> {
  readonly events: StoredEvent[] = [];
  readonly records: CustodyRecord[] = [];
  readonly contexts: IngestContext[] = [];
  failNext: { count: number; error: () => Error } | undefined;

  constructor(private readonly limits: Limits = DEFAULT_LIMITS) {}

  async ingest(items: readonly BatchItem[], ctx: IngestContext): Promise<IngestResponse> {
    this.contexts.push(ctx);
    if (this.failNext && this.failNext.count > 0) {
      this.failNext.count -= 1;
      throw this.failNext.error();
    }
    const out: IngestResponse = { accepted: 0, duplicates: 0, rejected: [] };
    const at = new Date().toISOString();
    const record = (r: Omit<CustodyRecord, 'n' | 'hash' | 'at' | 'method' | 'peer'>) =>
      this.records.push({ n: this.records.length + 1, at, method: ctx.method, peer: ctx.peer, hash: 'x', ...r });
    for (const item of items) {
      if (item.error !== undefined) {
        out.rejected.push({ index: item.index, error: item.error });
        record({ outcome: 'rejected', reason: item.error, ...(ctx.defaultSource ? { source: ctx.defaultSource } : {}) });
        continue;
      }
      const v = validateEvent(item.value, this.limits, item.bytes);
      if (!v.ok) {
        const error = formatIssues(v.errors);
        out.rejected.push({ index: item.index, error });
        record({ outcome: 'rejected', reason: error });
        continue;
      }
      const source = v.event.source ?? ctx.defaultSource ?? 'unknown';
      if (ctx.mayUseSource && !ctx.mayUseSource(source)) {
        const error = `source "${source}" is not allowed for this client`;
        out.rejected.push({ index: item.index, error });
        record({ outcome: 'rejected', reason: error, source });
        continue;
      }
      const id = v.event.id ?? deterministicId(source, v.event);
      if (this.events.some((e) => e.id === id)) {
        out.duplicates += 1;
        record({ outcome: 'duplicate', id, source });
        continue;
      }
      this.events.push({
        ...v.event,
        id,
        source,
        time: v.event.time ?? at,
        ingest: { method: ctx.method, peer: ctx.peer, receivedAt: at, gateway: 'fake', integrity: 'unchained' },
      });
      out.accepted += 1;
      record({ outcome: 'accepted', id, source });
    }
    return out;
  }

  async query(q: EventQuery): Promise<EventPage> {
    const start = q.cursor === undefined ? 0 : Number(q.cursor);
    const all = this.events.filter((e) => (q.source === undefined || e.source === q.source) && (q.type === undefined || e.type === q.type));
    const events = all.slice(start, start + q.limit);
    const next = start + q.limit;
    return next < all.length ? { events, nextCursor: String(next) } : { events };
  }

  async custodyPage(q: CustodyQuery): Promise<CustodyPage> {
    return { records: this.records.filter((r) => (q.id === undefined || r.id === q.id) && (q.source === undefined || r.source === q.source)) };
  }

  async verify(): Promise<VerifyReport> {
    return { ok: true, ledgerRecords: this.records.length, events: this.events.length, problems: [], problemCount: 0 };
  }

  async sources(): Promise<SourcesResponse> {
    return { epochs: [], sources: [] };
  }

  async agentEpochs(_agent?: string): Promise<EpochStatus[]> {
    return [];
  }
}
