import { newId, sha256Hex, type AuditEvent, type ChainedEvent } from '../../protocols/index.js';
import { buildChained } from './envelope-canonical.js';

/** Where an epoch's chain stands: the last seq written and its hash. */
export interface ChainHead {
  agent: string;
  epoch: string;
  head: number;
  lastHash: string | undefined;
}

/**
 * Assigns the agent-owned fields in commit order, so seq and prev stay
 * consistent however many callers share a group commit. The cursor works on
 * a copy of the chain head: the buffer adopts `head`/`lastHash` only after
 * the block is durable, so a failed write leaves nothing to roll back.
 *
 * The hash is protocols' `computeHash` (SHA-256 of the canonical JSON without
 * `hash`), inlined for speed; the stored line is that canonical text with
 * `hash` appended, so no second serialisation is needed.
 */
export class ChainCursor {
  head: number;
  lastHash: string | undefined;
  readonly events: ChainedEvent[] = [];
  readonly lines: string[] = [];

  constructor(private readonly chain: ChainHead) {
    this.head = chain.head;
    this.lastHash = chain.lastHash;
  }

  /** Chains one event; `receivedAt` (RFC 3339) is its time when it has none. */
  push(input: AuditEvent, receivedAt: string, now: number): ChainedEvent {
    const seq = this.head + 1;
    const { event, text } = buildChained(input, {
      id: input.id ?? newId(now),
      source: input.source ?? this.chain.agent,
      time: input.time ?? receivedAt,
      agent: this.chain.agent,
      epoch: this.chain.epoch,
      seq,
      prev: this.lastHash,
    });
    const hash = sha256Hex(text);
    event.hash = hash;
    // The canonical text with `hash` appended last, as a slice and a concatenation (flattened once, when the block is written).
    const line = `${text.slice(0, -1)},"hash":"${hash}"}`;
    this.lines.push(line);
    this.events.push(event as ChainedEvent);
    this.head = seq;
    this.lastHash = hash;
    return event as ChainedEvent;
  }

  get count(): number {
    return this.events.length;
  }

  /** Forgets every event after the first `count` (an append that could not be chained whole). */
  truncate(count: number): void {
    this.events.length = count;
    this.lines.length = count;
    this.head = this.chain.head + count;
    this.lastHash = count === 0 ? this.chain.lastHash : this.events[count - 1]?.hash;
  }
}
