import type { Limits } from '../../protocols/index.js';
import type { Ingestor } from '../pipeline/ingestor.js';
import type { Storage } from '../storage/types.js';
import type { TokenAuth } from '../auth/tokens.js';

/** A Prometheus registry as `GET /metrics` needs it (prom-client's Registry fits). */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/** What the routes share; built once by HttpApi. */
export interface ApiContext {
  ingestor: Ingestor;
  /** Read side only: the routes never write storage directly. */
  storage: Pick<Storage, 'query' | 'custody' | 'sources' | 'verify'>;
  tokens: TokenAuth;
  limits: Limits;
  metrics?: MetricsSource;
  /** False while starting or draining: `/readyz` answers 503 then. */
  isReady: () => boolean;
  /** Most POST /v1/events bodies being read or ingested at once; more answer 503 + Retry-After. */
  maxInflightIngests: number;
}
