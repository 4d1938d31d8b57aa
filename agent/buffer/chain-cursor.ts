import { CHAIN_ALLOWANCE_BYTES, newId, sha256Hex, type AuditEvent, type ChainedEvent } from '../../protocols/index.js';
import { buildChained } from './envelope-canonical.js';

/** Where an epoch's chain stands: the last seq written and its hash. */
export interface ChainHead {
  agent: string;
  epoch: string;
  head: number;
  lastHash: string | undefined;
}

/**
 * An event whose stored line is over the buffer's `maxLineBytes`: canonical
 * JSON can be longer than the text the intake checked (`1e20` is written as
 * 21 digits), and the agent adds its fields. The gateway would refuse the
 * line on push, so the agent must not acknowledge it.
 */
export class LineTooLarge extends Error {
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`event is ${bytes} bytes once stored (its canonical JSON with the fields the agent adds), over the limit of ${limit} (maxEventBytes + ${CHAIN_ALLOWANCE_BYTES} for those fields)`);
    this.name = 'LineTooLarge';
  }
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

  constructor(
    private readonly chain: ChainHead,
    /** Largest stored line, in UTF-8 bytes; a longer one is refused (LineTooLarge) and nothing of it kept. */
    private readonly maxLineBytes = Number.POSITIVE_INFINITY,
  ) {
    this.head = chain.head;
    this.lastHash = chain.lastHash;
  }

  /** Chains one event; `receivedAt` (RFC 3339) is its time when it has none. Throws LineTooLarge, changing nothing. */
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
    // A UTF-16 unit is at most 3 UTF-8 bytes: only a line that long needs counting.
    if (line.length * 3 > this.maxLineBytes) {
      const bytes = Buffer.byteLength(line);
      if (bytes > this.maxLineBytes) throw new LineTooLarge(bytes, this.maxLineBytes);
    }
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
