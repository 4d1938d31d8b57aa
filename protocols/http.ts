/** HTTP request and response shapes shared by agent, gateway and CLI (DESIGN §5). */

export interface RejectedItem {
  index: number;
  error: string;
}

/** Answer to `POST /v1/events` on both the gateway and the agent intake. */
export interface IngestResponse {
  accepted: number;
  duplicates: number;
  rejected: RejectedItem[];
}

/** An error answer: one clear line and the stable code. */
export interface ErrorResponse {
  error: string;
  code: string;
}

export type PushState = 'idle' | 'sending' | 'backoff' | 'open' | 'half-open' | 'disabled';

/** `GET /v1/status` on the agent's pull listener. */
export interface AgentStatus {
  id: string;
  epoch: string;
  head: number;
  delivered: number;
  oldest: number;
  bufferedEvents: number;
  bufferedBytes: number;
  push: { state: PushState; lastError: string | null };
  /** Set when the buffer had to be recovered (corruption); says what was done. */
  recovered?: string;
  /** Set while the buffer cannot write: why its last group commit failed (a full disk, say). */
  writeError?: string;
}

export interface SeqGap {
  /** First missing seq. */
  from: number;
  /** Last missing seq (inclusive). */
  to: number;
  since: string;
  /**
   * Set when the agent's own `meteorzx.gap` event (chained in this epoch, verified on arrival) names
   * these seqs lost: a loss already recorded, which backfill does not ask for again.
   */
  reportedByAgent?: true;
}

/** One (agent, epoch) in `GET /v1/sources`. */
export interface EpochStatus {
  agent: string;
  epoch: string;
  lastSeq: number;
  lastSeen: string;
  received: number;
  gaps: SeqGap[];
}

export interface SourceStatus {
  source: string;
  lastSeen: string;
  accepted: number;
  duplicates: number;
  rejected: number;
}

export interface SourcesResponse {
  epochs: EpochStatus[];
  sources: SourceStatus[];
  /**
   * More sources follow: ask again with `after=<next>`. A page holds the sources after `after` up to and
   * including `next` (all the rest on the last page), and the epochs of the agents whose ids fall in that range.
   */
  next?: string;
  /**
   * Registry keys (`rs!<source>`, `ra!<agent>!<epoch>`) this answer left out because they do not decode
   * (damage on disk): the rest is listed. Absent when there were none. `meteorzx verify` names them too.
   */
  damaged?: string[];
}

/** One per ingestion attempt, and `retained` for a deletion by the gateway's storage retention. */
export type CustodyOutcome = 'accepted' | 'duplicate' | 'rejected' | 'retained';

/** One record of the gateway's hash-chained custody ledger (DESIGN §4). */
export interface CustodyRecord {
  /** Position in the ledger, 1, 2, 3… */
  n: number;
  at: string;
  outcome: CustodyOutcome;
  /** How the event arrived; `retention` on a `retained` record. */
  method: 'mqtt' | 'http' | 'pull' | 'retention';
  peer: string;
  id?: string;
  source?: string;
  reason?: string;
  /** Hash of the event exactly as stored (accepted only). */
  eventHash?: string;
  /**
   * `retained` only: retention deleted the stored events of the store's
   * commits `from` … `to` that were all received before `before` (RFC 3339).
   */
  from?: number;
  to?: number;
  before?: string;
  prev?: string;
  hash: string;
}

/** Body of the gateway's `POST /v1/pull` (docs/http-api.md). */
export interface PullRequest {
  url: string;
  after?: number;
  until?: number;
  token?: string;
  /** PEM text of CA certificates to trust for an https `url` not in `pullFrom` (≤ 64 KiB). */
  ca?: string;
}

/** Query parameters of `GET /v1/events` on the agent's pull API. */
export interface AgentPullQuery {
  after: number;
  limit: number;
}

export const NDJSON = 'application/x-ndjson';
