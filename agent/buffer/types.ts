import type { AuditEvent, ChainedEvent } from '../../protocols/index.js';

/** What the buffer does when `buffer.maxBytes` is reached (DESIGN §3.5). */
export type WhenFull = 'block' | 'drop-oldest' | 'reject';

export interface BufferState {
  id: string;
  epoch: string;
  /** Last seq appended (0 when empty). */
  head: number;
  /** Last seq the gateway acknowledged, over a contiguous prefix. */
  delivered: number;
  /** Oldest seq still held (head + 1 when nothing is held). */
  oldest: number;
  /** Events held but not yet delivered. */
  bufferedEvents: number;
  /** Bytes held (all retained events, delivered or not). */
  bufferedBytes: number;
  /** Set when the store was recovered from corruption at open. */
  recovered?: string;
  /**
   * Set while the buffer cannot write: why the last group commit failed (a
   * full disk, say, or a database that could not be opened again). Cleared
   * by the next commit that is written, or once the database is open again.
   */
  writeError?: string;
}

/**
 * A key the agent keeps beside its events (e.g. a file offset checkpoint),
 * written in the same batch as an append: `value` null deletes the key.
 */
export interface ExtraOp {
  /** 1–256 characters. */
  key: string;
  value: string | null;
}

/** How an append meets a full buffer. */
export interface AppendOptions {
  /**
   * Taken even when the buffer is full, whatever `whenFull` says: for the gap event that records a
   * loss (an event the gateway refused for good), which a full buffer must not turn into a silent
   * one. Its few hundred bytes may pass `maxBytes`, as the commits in flight may.
   */
  evenIfFull?: boolean;
}

/** One buffered event as stored: its seq and its canonical JSON line, the exact text its hash covers plus `hash`. */
export interface StoredLine {
  seq: number;
  line: string;
}

/**
 * The agent's durable buffer (LevelDB). Every intake appends through it;
 * the push sink reads from `delivered` and acks; the pull API reads any range.
 */
export interface AgentBuffer {
  open(): Promise<void>;
  /** Finishes the commit in progress, then closes the database. Idempotent. */
  close(): Promise<void>;
  /**
   * Assigns id (when absent), source (when absent: the agent id), time (when
   * absent), agent, epoch, seq, prev and hash; resolves after the group commit
   * holding these events is durable (synced, or written to the OS with
   * durability `os`). Rejects with METEORZX_BUFFER_FULL (status 503, policy
   * block) or METEORZX_BUFFER_REJECTED (status 507, policy reject) when full.
   * `extra` ops (e.g. a file offset checkpoint, or its deletion) are written in the same batch.
   * With `options.evenIfFull` nothing is refused for being full.
   */
  append(events: readonly AuditEvent[], extra?: readonly ExtraOp[], options?: AppendOptions): Promise<ChainedEvent[]>;
  /** Events with seq > after, in seq order, at most `limit` (and about `maxBytes`: UTF-8 bytes of their lines, each with a newline). */
  read(after: number, limit: number, maxBytes?: number): Promise<ChainedEvent[]>;
  /**
   * The same events as `read`, as their stored lines: what push and pull
   * send, with no event parsed or serialised on the way.
   */
  readLines(after: number, limit: number, maxBytes?: number): Promise<StoredLine[]>;
  /**
   * Marks everything ≤ seq delivered (durably). Never moves backwards. With
   * `epoch`, the seq is that epoch's: an ack for an epoch the buffer no
   * longer holds (its store was replaced) changes nothing. Without it, the
   * epoch current at the call.
   */
  ack(seq: number, epoch?: string): Promise<void>;
  state(): BufferState;
  /**
   * The push sink says which undelivered events it holds in memory: seq ≤
   * `upTo` of `epoch` (its window). A drop-oldest or retention release that deletes
   * them names them in no gap event, since the sink sends them from memory;
   * their ranges are recorded until an ack passes them, and named lost at
   * the next open if none did (agent/buffer/held-ranges.ts).
   */
  holdInMemory?(held: () => { epoch: string; upTo: number }): void;
  /**
   * Seq ranges of the current epoch that are recorded holes: damage found
   * in the store, each already named by a `buffer-corrupt` gap event. Reads
   * step over them; sorted and disjoint (a range may start before `oldest`).
   */
  holeRanges(): readonly (readonly [number, number])[];
  /** Resolves when space is available again (for sources that pause instead of failing). */
  waitForSpace(): Promise<void>;
  /** Called after every commit that appended events. Returns an unsubscribe function. */
  onAppend(listener: (head: number) => void): () => void;
  /** Reads a value the agent stored with `extra` (e.g. a file offset). */
  getMeta(key: string): Promise<string | undefined>;
  /**
   * The `extra` keys that start with `prefix` (1–256 characters), in key
   * order, at most `limit` (a positive integer), those after the key
   * `after` only when given: how an intake finds the checkpoints it wrote
   * and no longer names anywhere, a page at a time.
   */
  metaKeys(prefix: string, limit: number, after?: string): Promise<string[]>;
}
