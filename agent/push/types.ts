import type { RejectedItem } from '../../protocols/index.js';
import type { StoredLine } from '../buffer/types.js';

/**
 * What a transport reports for one batch. The sender owns retries, ordering
 * and the delivered cursor; a transport only says what became of one send.
 */
export type SendOutcome =
  /** The gateway durably took the batch (some events may have been recorded as rejected there). */
  | { kind: 'acked'; rejected: readonly RejectedItem[] }
  /** Worth retrying later: network, timeout, 5xx, 408, 429, auth. `retryAfterMs` from a Retry-After header. */
  | {
      kind: 'retry';
      error: string;
      retryAfterMs?: number;
      /**
       * The send went out and got no answer: the peer closed the connection under it, or the answer
       * did not come within the transport's timeout. A broker closes the connection on a packet over
       * its size limit (MQTT 3.1.1 has no way to refuse one publish), and a slow link cannot carry a
       * large batch within the timeout; so a batch that keeps meeting this is halved (Sender.halveUnanswered).
       */
      unanswered?: boolean;
    }
  /**
   * Retrying the same bytes cannot succeed (400, 413, …): the sender splits the batch or skips the event.
   * `tooLarge`: refused for its size (413): new batches are made smaller too (BatchCap).
   */
  | { kind: 'permanent'; error: string; tooLarge?: boolean };

/** One way to push to the gateway (HTTP, MQTT). Exactly one runs per agent. */
export interface PushTransport {
  readonly name: string;
  /** Most batches this transport may have in flight at once. */
  readonly maxInFlight: number;
  start(): Promise<void>;
  /** Sends one batch of stored lines, in seq order. Never throws: failures are outcomes. */
  send(events: readonly StoredLine[]): Promise<SendOutcome>;
  /**
   * The buffer replaced a damaged store and began a new epoch (Sender.followEpoch):
   * a transport that announces the epoch (MQTT's retained status) says the new one.
   */
  epochChanged?(epoch: string): void;
  /**
   * The delivered cursor moved (or is known at start): a transport that announces it (MQTT's retained
   * status) says so, for a gateway behind a bridge to see a tail it never got (mqtt-transport.ts).
   */
  progress?(delivered: number): void;
  /** Transports with a command channel (MQTT) deliver `audit/<id>/cmd` payloads here; see agent/push/commands.ts. */
  onCommand?(listener: (payload: Buffer) => void): void;
  /**
   * Transports that bring their link up by themselves (MQTT's command link, on its own backoff) call
   * `listener` each time it comes up: evidence that the gateway is back (Sender.linkUp).
   */
  onLinkUp?(listener: () => void): void;
  /** Stops sending; in-flight sends resolve (possibly as `retry`). Idempotent. */
  close(): Promise<void>;
}
