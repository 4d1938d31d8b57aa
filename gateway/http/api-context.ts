import type { Limits, PullRequest } from '../../protocols/index.js';
import type { Ingestor } from '../pipeline/ingestor.js';
import type { DamagedBlock, Storage } from '../storage/types.js';
import type { TokenAuth } from '../auth/tokens.js';
import type { PullResult } from '../pull/connector.js';
import type { PullsSection } from '../pull/pull-service.js';

/** A Prometheus registry as `GET /metrics` needs it (prom-client's Registry fits). */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/** What the routes share; built once by HttpApi. */
export interface ApiContext {
  ingestor: Ingestor;
  /** Read side only: the routes never write storage directly. */
  storage: Pick<Storage, 'query' | 'custodyPage' | 'sources' | 'verify'>;
  tokens: TokenAuth;
  limits: Limits;
  metrics?: MetricsSource;
  /** Told the blocks a read left out because they do not decode (the damaged-blocks metric counts them). */
  onDamagedRead?: (damaged: readonly DamagedBlock[]) => void;
  /** False while starting, draining, or while storage cannot write: `/readyz` answers 503 then. */
  isReady: () => boolean;
  /** Most POST /v1/events bodies being read or ingested at once; more answer 503 + Retry-After. */
  maxInflightIngests: number;
  /** Most body bytes (raw and decompressed) those ingests may hold at once; past it, 503 + Retry-After. Default 64 MiB. */
  maxPendingIngestBytes?: number;
  /** Pull connectors and backfill (POST /v1/pull, `pulls` in GET /v1/sources); absent in tests that build the API alone. */
  pulls?: { pull(request: PullRequest): Promise<PullResult>; section(agent?: string): Promise<PullsSection> };
}
