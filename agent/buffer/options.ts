import { CHAIN_ALLOWANCE_BYTES, DEFAULT_LIMITS } from '../../protocols/index.js';
import type { WhenFull } from './types.js';

/** Wall-clock source, injectable so tests can age blocks past retention. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** The subset of a pino logger the buffer uses; pino's Logger satisfies it. */
export interface BufferLogger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}

export type Durability = 'fsync' | 'os';

export interface BufferOptions {
  /** The agent's data directory; the database lives in `<dataDir>/buffer`. */
  dataDir: string;
  /** The agent id: stamped as `agent` on every event, and as `source` when absent. */
  id: string;
  /** Bound on stored (compressed) block bytes. */
  maxBytes?: number;
  whenFull?: WhenFull;
  /** How long delivered events stay readable for pull, in ms. */
  retainMs?: number;
  /**
   * Age (ms) after which even undelivered blocks are deleted, with a gap event.
   * Undefined (default): undelivered events are only ever dropped by `drop-oldest`.
   */
  maxUndeliveredAgeMs?: number;
  durability?: Durability;
  /** How long an append waits for others to share its group commit, in ms. */
  commitIntervalMs?: number;
  /** Commit at once when this many events are pending. */
  maxCommitEvents?: number;
  /** How often the retention sweep runs, in ms. */
  sweepIntervalMs?: number;
  /** Decoded events kept in the read cache (the push sink reads right behind the head). */
  cacheEvents?: number;
  /**
   * Largest stored line (the event's canonical JSON with the fields the buffer adds), in UTF-8 bytes:
   * an event over it is refused alone (METEORZX_EVENT_TOO_LARGE). The gateway takes a chained event
   * up to maxEventBytes + CHAIN_ALLOWANCE_BYTES, and no more.
   */
  maxLineBytes?: number;
  /** LevelDB resource caps: the agent's RSS budget is 40 MB idle, 60 MB under load. */
  level?: { maxOpenFiles?: number; cacheSize?: number; writeBufferSize?: number };
  clock?: Clock;
  logger?: BufferLogger;
}

export type ResolvedBufferOptions = Required<Omit<BufferOptions, 'maxUndeliveredAgeMs' | 'logger' | 'level'>> & {
  maxUndeliveredAgeMs: number | undefined;
  logger: BufferLogger | undefined;
  level: { maxOpenFiles: number; cacheSize: number; writeBufferSize: number };
};

const MiB = 1024 * 1024;

export const DEFAULT_BUFFER_OPTIONS = {
  maxBytes: 1024 * MiB, // 1 GiB of compressed blocks (≈8 GiB of event JSON at the usual ~8× ratio)
  whenFull: 'block' as WhenFull,
  retainMs: 7 * 24 * 3600_000, // 7 days
  durability: 'fsync' as Durability,
  commitIntervalMs: 2, // ms: short enough for interactive latency, long enough to share an fsync
  maxCommitEvents: 2000, // events: ~0.9 MB of chained JSON, one ~100 KB compressed block
  sweepIntervalMs: 60_000, // ms
  cacheEvents: 4096, // events: ≈4 MB of decoded objects at ~1 KB each, held only for a reader near the head
  maxLineBytes: DEFAULT_LIMITS.maxEventBytes + CHAIN_ALLOWANCE_BYTES,
  level: {
    maxOpenFiles: 64,
    cacheSize: 4 * MiB, // bytes of LevelDB block cache
    writeBufferSize: 4 * MiB, // bytes of memtable before a flush to level 0
  },
};

const systemClock: Clock = { now: () => Date.now() };

export function resolveBufferOptions(options: BufferOptions): ResolvedBufferOptions {
  const d = DEFAULT_BUFFER_OPTIONS;
  return {
    dataDir: options.dataDir,
    id: options.id,
    maxBytes: options.maxBytes ?? d.maxBytes,
    whenFull: options.whenFull ?? d.whenFull,
    retainMs: options.retainMs ?? d.retainMs,
    maxUndeliveredAgeMs: options.maxUndeliveredAgeMs,
    durability: options.durability ?? d.durability,
    commitIntervalMs: options.commitIntervalMs ?? d.commitIntervalMs,
    maxCommitEvents: options.maxCommitEvents ?? d.maxCommitEvents,
    sweepIntervalMs: options.sweepIntervalMs ?? d.sweepIntervalMs,
    cacheEvents: options.cacheEvents ?? d.cacheEvents,
    maxLineBytes: options.maxLineBytes ?? d.maxLineBytes,
    level: { ...d.level, ...options.level },
    clock: options.clock ?? systemClock,
    logger: options.logger,
  };
}
