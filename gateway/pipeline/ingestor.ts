import type { BatchItem, IngestResponse } from '../../protocols/index.js';

/**
 * The seam between ingress (MQTT broker, HTTP API, pull connectors) and the
 * pipeline. Ingress decodes bytes into batch items and calls `ingest`; the
 * promise resolves only after every item is durably stored or durably
 * recorded as rejected or duplicate (one group-committed LevelDB batch), so
 * the caller may then acknowledge (HTTP 2xx, MQTT PUBACK).
 */
export interface IngestContext {
  method: 'mqtt' | 'http' | 'pull';
  /** Remote address (ip:port) or MQTT client id + address. */
  peer: string;
  /** Source taken by events that name none (the MQTT topic's <source>). */
  defaultSource?: string;
  /**
   * Whether this peer may submit events for this source; undefined = any.
   * An event failing it is rejected with the reason (relayFor, DESIGN §5).
   */
  mayUseSource?: (source: string) => boolean;
}

export interface Ingestor {
  ingest(items: readonly BatchItem[], ctx: IngestContext): Promise<IngestResponse>;
}
