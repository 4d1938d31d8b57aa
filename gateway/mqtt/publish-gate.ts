import { decodePayload, isBridgeNotification, isMeteorError, tryParseTopic, type BatchItem, type IngestResponse, type Limits } from '../../protocols/index.js';
import { readChainedBatch, type ChainedBatch } from '../../protocols/chained-batch.js';
import type { IngestContext, Ingestor } from '../pipeline/ingestor.js';
import type { MqttIdentity } from '../auth/mqtt-users.js';

/** Why a publish was refused: aedes then closes the client's connection (MQTT 3.1.1 has no PUBACK error code). */
export class PublishRefused extends Error {
  override readonly name = 'PublishRefused';
}

export interface PublishContext {
  clientId: string;
  /** `clientId@ip:port`, recorded in custody records. */
  peer: string;
  identity: MqttIdentity;
}

export interface PublishGateOptions {
  ingestor: Ingestor;
  limits: Limits;
  /**
   * How long one publish may wait for an overloaded pipeline before the
   * connection is closed so the client retries later (ms). While it waits,
   * aedes reads nothing more from that client's socket: backpressure.
   */
  maxWaitMs?: number;
  /** First delay between retries of an overloaded ingest (ms); doubles up to 1 s. */
  retryDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/**
 * Where a publish goes, decided from its topic and the client alone (so a
 * client's route can be reused while it keeps publishing on one topic):
 * `ingest` for its source's events topic, `pass` for presence, commands and
 * a Mosquitto bridge's connection state.
 */
export type PublishRoute = { kind: 'ingest'; source: string } | { kind: 'pass'; topic: 'status' | 'cmd' | 'bridge' };

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Overload is worth waiting out (the pipeline's queue is full); a storage failure is not. */
function isOverload(err: unknown): boolean {
  return isMeteorError(err) && err.code === 'METEORZX_GATEWAY_OVERLOADED';
}

/**
 * Decides every PUBLISH before aedes acks it. For an events topic the
 * durable write happens here, because aedes sends the QoS 1 PUBACK right
 * after authorizePublish calls back and before its `published` hook
 * (DESIGN §3.3): calling back success is the acknowledgement.
 */
export class PublishGate {
  private readonly maxWaitMs: number;
  private readonly retryDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(private readonly opts: PublishGateOptions) {
    this.maxWaitMs = opts.maxWaitMs ?? 30_000;
    this.retryDelayMs = opts.retryDelayMs ?? 20;
    this.sleep = opts.sleep ?? defaultSleep;
    this.now = opts.now ?? Date.now;
  }

  /** Routes a publish by its topic; throws PublishRefused when the client may not publish there. */
  route(ctx: PublishContext, topic: string): PublishRoute {
    // A bridge from a Mosquitto in front of devices announces itself here before it forwards their events.
    if (isBridgeNotification(topic)) return { kind: 'pass', topic: 'bridge' };
    const parsed = tryParseTopic(topic);
    if (parsed === undefined) {
      throw new PublishRefused(`topic "${topic.slice(0, 200)}" is not audit/<source>/events|status|cmd`);
    }
    const own = ctx.identity.source;
    if (parsed.kind === 'cmd') {
      // Commands go from the gateway to agents; an authenticated client may not forge them.
      if (own !== undefined) throw new PublishRefused(`client may not publish commands (${topic})`);
      return { kind: 'pass', topic: 'cmd' };
    }
    if (own !== undefined && parsed.source !== own) {
      throw new PublishRefused(`user "${ctx.identity.username ?? ''}" publishes as source "${own}", not "${parsed.source}"`);
    }
    return parsed.kind === 'status' ? { kind: 'pass', topic: 'status' } : { kind: 'ingest', source: parsed.source };
  }

  /**
   * Ingests an events payload; resolves once it is durable (stored, or
   * recorded as rejected), when the publish may be acknowledged. Rejects
   * with the ingest error otherwise.
   */
  ingest(ctx: PublishContext, source: string, payload: Buffer, gone: () => boolean = () => false): Promise<IngestResponse> {
    const decoded = this.decode(payload, source);
    const own = ctx.identity.source;
    const mayUseSource = own === undefined ? undefined : ctx.identity.mayUseSource;
    const ingestCtx: IngestContext = {
      method: 'mqtt',
      peer: ctx.peer,
      defaultSource: source,
      ...(mayUseSource === undefined ? {} : { mayUseSource }),
    };
    if (!Array.isArray(decoded)) return this.ingestSlices(decoded, ingestCtx, gone);
    return this.ingestItems(decoded, ingestCtx, gone);
  }

  private ingestItems(items: BatchItem[], ctx: IngestContext, gone: () => boolean): Promise<IngestResponse> {
    // The first attempt directly: the retry loop's promises are paid only under overload.
    return this.opts.ingestor.ingest(items, ctx).catch((err: unknown) => {
      if (!isOverload(err)) throw err;
      return this.retryOverloaded(items, ctx, err, gone);
    });
  }

  /**
   * An agent's batch over maxBatchEvents (readChainedBatch), one slice after the other: the pipeline
   * never sees more than maxBatchEvents from one ingest, and the PUBACK waits for the last slice. A
   * gateway that stops half-way is sent the whole batch again, and dedup drops what it already has.
   */
  private async ingestSlices(batch: ChainedBatch, ctx: IngestContext, gone: () => boolean): Promise<IngestResponse> {
    const total: IngestResponse = { accepted: 0, duplicates: 0, rejected: [] };
    for (const slice of batch.slices) {
      if (gone()) throw new Error('the client disconnected while its batch was being stored; it resends it after reconnecting');
      const answer = await this.ingestItems(slice, ctx, gone);
      total.accepted += answer.accepted;
      total.duplicates += answer.duplicates;
      total.rejected.push(...answer.rejected);
    }
    return total;
  }

  private decode(payload: Buffer, source: string): BatchItem[] | ChainedBatch {
    try {
      return decodePayload(payload, this.opts.limits, { keepText: true });
    } catch (err) {
      if (isMeteorError(err) && err.code === 'METEORZX_BATCH_TOO_LARGE') {
        const chained = readChainedBatch(payload, this.opts.limits, source, { keepText: true });
        if (chained !== undefined) return chained;
      }
      // An unreadable payload is still an ingestion attempt: it becomes one rejection record.
      const reason = err instanceof Error ? err.message : String(err);
      return [{ index: 0, bytes: payload.byteLength, error: reason }];
    }
  }

  /**
   * `gone`: the client disconnected. Its publish can no longer be acknowledged, and it resends it after
   * reconnecting: kept retrying, it added a second copy to the load that made it wait, for up to maxWaitMs.
   */
  private async retryOverloaded(items: BatchItem[], ctx: IngestContext, first: unknown, gone: () => boolean): Promise<IngestResponse> {
    const deadline = this.now() + this.maxWaitMs;
    let delay = this.retryDelayMs;
    let err = first;
    for (;;) {
      if (!isOverload(err) || this.now() + delay > deadline) throw err;
      await this.sleep(delay);
      if (gone()) throw new Error('the client disconnected while its publish waited out the overload; it resends it after reconnecting', { cause: err });
      delay = Math.min(delay * 2, 1000);
      try {
        return await this.opts.ingestor.ingest(items, ctx);
      } catch (next) {
        err = next;
      }
    }
  }
}
