/**
 * A source of events feeding the agent's buffer: the HTTP intake, and later
 * files, syslog, serial and a local MQTT broker. Each appends through the
 * buffer and acknowledges its producer only after the append resolved
 * (DESIGN §3.1); each stops reading when the buffer is full (§3.5).
 */
export interface Intake {
  /** Short name, used as the `intake` label of metrics and in logs. */
  readonly name: string;
  /** Starts reading (binds, opens files…). Rejects with a typed error when it cannot. */
  start(): Promise<void>;
  /** Stops reading and waits for appends already started to finish. Idempotent. */
  close(): Promise<void>;
  /** Where it listens or reads, for the `listening` log line. */
  describe(): Record<string, unknown>;
}
