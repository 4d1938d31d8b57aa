import type { AuditEvent, CanonicalLine, Integrity, StoredEvent } from '../../protocols/index.js';

/** Where in the pipeline an attempt was rejected (a metric label and the custody reason's origin). */
export type RejectStage = 'decode' | 'validate' | 'transform' | 'rule';

/**
 * One ingestion attempt on its way through the stages. Validation fills
 * `event` (with source, time and id settled) or `rejected`; later stages
 * add the integrity verdict, tags, or a rejection / duplicate mark.
 */
export interface PipelineItem {
  /** Position in the caller's batch, echoed in `rejected[].index`. */
  index: number;
  event?: AuditEvent & { id: string; source: string; time: string };
  /** The event exactly as it arrived, before defaults were filled: what the agent's hash covers. */
  arrived?: AuditEvent;
  /**
   * The JSON text the event was parsed from, kept only for a chained event
   * used as it arrived (id, source and time its own): the integrity check
   * reads it as an agent's stored line, then lets it go.
   */
  text?: string | undefined;
  /** That text read as an agent's line, kept for the stored line while nothing changes the event. */
  line?: CanonicalLine | undefined;
  rejected?: { stage: RejectStage; reason: string };
  /** For custody when rejected: the id and source as far as they could be read. */
  id?: string;
  source?: string;
  /**
   * The chain position of an event validation rejected, where it can be
   * read and the client may write that agent's chain: its seq arrived, so it
   * is no hole (DESIGN §4). `hash` and `prev` only when well-formed.
   */
  chain?: { agent: string; epoch: string; seq: number; hash?: string; prev?: string };
  integrity?: Integrity;
  tags?: string[];
  /** Raised once the commit is durable. */
  alerts?: Array<{ kind: 'rule' | 'chain-break'; rule?: string; detail?: string }>;
  duplicate?: boolean;
  /** The event as committed (accepted only). */
  stored?: StoredEvent;
}
