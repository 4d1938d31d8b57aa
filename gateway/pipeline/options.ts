import type { Logger } from 'pino';
import type { AuditEvent, Limits, StoredEvent } from '../../protocols/index.js';
import type { GatewayMetrics } from '../metrics.js';
import type { Storage } from '../storage/types.js';
import type { RuleConfig } from './rules/rules.js';
import type { TransformConfig } from './transforms/transforms.js';

/** The config sections the pipeline reads; a whole GatewayConfig fits. Durations are ms. */
export interface PipelineConfig {
  readonly pipeline: {
    readonly dedup: { readonly window: number; readonly cacheSize: number };
    readonly transforms: readonly TransformConfig[];
    /** When set, `hash` steps take an HMAC-SHA256 with this key instead of a plain SHA-256. */
    readonly hashKey?: string;
    readonly rules: readonly RuleConfig[];
    /** Cost units one rule may spend on one event (rules/cost-meter.ts); default DEFAULT_RULE_COST_LIMIT. */
    readonly ruleCostLimit?: number;
  };
  readonly commit: { readonly maxEvents: number; readonly maxWaitMs: number };
  /** When given, retention runs hourly and once at start. */
  readonly storage?: { readonly retention: number };
}

/** Something to tell an operator about: a rule with `alert: true` matched, or an agent's chain broke. */
export interface PipelineAlert {
  kind: 'rule' | 'chain-break';
  /** The rule's name (kind `rule`). */
  rule?: string;
  detail?: string;
  /** The event as stored, or as it was when a rule dropped it. */
  event: StoredEvent | AuditEvent;
  at: string;
}

export interface PipelineOptions {
  storage: Storage;
  config: PipelineConfig;
  limits?: Limits;
  /** Recorded in every stored event's `ingest.gateway`. */
  gatewayName: string;
  /** Wall clock, ms (receive times, dedup window, retention). */
  clock?: () => number;
  /** Alert sink; called after the event is durable. Default: a warning in the log and `alerts_total`. */
  onAlert?: (alert: PipelineAlert) => void;
  /** Told the accepted events per source of each durable commit (`alerts.volumeDrop`); absent, nothing is counted. */
  countAccepted?: (source: string, n: number) => void;
  metrics?: GatewayMetrics | undefined;
  logger?: Pick<Logger, 'warn' | 'error'>;
  /** Events waiting for a commit before ingest answers overloaded (default 20 × commit.maxEvents). */
  maxQueuedEvents?: number;
  /** (agent, epoch) chain heads kept in memory (default 100,000; more are re-read from storage). */
  maxChains?: number;
  /** Commits under way at once: one written while the next is prepared (default 2; 1 = one at a time). */
  maxInFlightCommits?: number;
}
