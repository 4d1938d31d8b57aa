import type { Aedes, Client } from 'aedes';
import mqttPacket from 'mqtt-packet';

/**
 * Unless told otherwise, mqtt-packet — which aedes writes every packet
 * with — builds a 2-byte Buffer for each of the 65,536 packet ids at its
 * first write: 6 MB of heap and 65k objects that every mark-compact walks,
 * to save one small allocation per PUBACK. A broker of ours turns that off
 * before it starts. The setting is mqtt-packet's, for the whole process
 * (MQTT.js's `writeCache: false` turns off the same one).
 */
export function noPacketIdCache(): void {
  mqttPacket.writeToStream.cacheNumbers = false;
}

/**
 * The largest MQTT packet a broker of ours reads: a batch body at the
 * limit (maxBodyBytes) plus room for the fixed header, a topic and the
 * packet id. MQTT 3.1.1 allows 256 MiB per packet, and aedes buffers a
 * packet whole before anyone sees it, so without a cap one client could
 * make the broker hold 256 MiB — and a thousand clients, 256 GiB.
 */
export function maxPacketBytes(maxBodyBytes: number): number {
  return maxBodyBytes + 64 * 1024;
}

/** What a connection handler sees of aedes' client: its mqtt-packet parser (not part of aedes' typings). */
interface ParserInternals {
  packet: { cmd?: string; length: number };
  _parseLength(): boolean;
  _emitError(err: Error): void;
}

/**
 * Makes a connection handler that refuses any packet whose declared length
 * is over `maxBytes`, as soon as its fixed header has been read: the
 * parser reports an error, aedes closes the connection (MQTT 3.1.1 has no
 * way to refuse one packet and keep the connection), and at most the bytes
 * of that one socket read were ever buffered. `onOversize` hears of it
 * first (for a warning in the log).
 *
 * aedes 1.x exposes no packet size limit, so this wraps the `_parseLength`
 * step of the client's mqtt-packet parser; a test fails if a new aedes or
 * mqtt-packet changes those internals.
 */
export function cappedHandle<S>(
  broker: Aedes,
  maxBytes: number,
  onOversize?: (client: Client, err: Error) => void,
): (stream: S, req?: unknown) => Client {
  const handle = broker.handle as unknown as (stream: S, req?: unknown) => Client;
  return (stream, req) => {
    const client = handle(stream, req);
    const parser = (client as unknown as { _parser?: ParserInternals })._parser;
    if (parser === undefined || typeof parser._parseLength !== 'function') {
      throw new Error('aedes client has no mqtt-packet parser to cap: the packet size limit cannot be enforced with this aedes version');
    }
    const parseLength = parser._parseLength;
    parser._parseLength = function capped(this: ParserInternals): boolean {
      if (!parseLength.call(this)) return false;
      if (this.packet.length > maxBytes) {
        const err = new Error(`${this.packet.cmd ?? 'MQTT'} packet of ${this.packet.length} bytes is over the limit of ${maxBytes} bytes; closing the connection`);
        onOversize?.(client, err);
        this._emitError(err);
        return false;
      }
      return true;
    };
    return client;
  };
}

/** The part of aedes' persistence that holds QoS 2 publishes awaiting their PUBREL. */
export interface IncomingStore {
  incomingStorePacket(client: Client, packet: { payload?: unknown }): Promise<void>;
  /** Resolves when a publish with this message id awaits its PUBREL; rejects when none does. */
  incomingGetPacket(client: Client, packet: { messageId: number }): Promise<unknown>;
}

/** The broker's store of QoS 2 publishes awaiting their PUBREL, when it has one. */
export function incomingStoreOf(broker: Aedes | undefined): IncomingStore | undefined {
  return (broker as unknown as { persistence?: IncomingStore } | undefined)?.persistence;
}

const NO_PAYLOAD = Buffer.alloc(0);

/**
 * Makes the broker keep a QoS 2 publish that awaits its PUBREL without its
 * payload. aedes stores the packet from PUBREC to PUBREL only to know its
 * message id (a resent PUBLISH then gets a PUBREC, not a second delivery)
 * and never reads the payload back; kept, a client that withholds PUBREL
 * pins up to maxInflightInbound (1,000) payloads of up to maxBodyBytes
 * each, and with clean=false they outlive the connection. The broker's own
 * delivery to subscribers uses the packet it was handed, not the stored copy.
 */
export function incomingWithoutPayload(broker: Aedes): void {
  const persistence = (broker as unknown as { persistence?: Partial<IncomingStore> }).persistence;
  if (persistence === undefined || typeof persistence.incomingStorePacket !== 'function') {
    throw new Error('aedes broker has no incomingStorePacket to wrap: QoS 2 payloads cannot be kept out of its store with this aedes version');
  }
  const store = persistence.incomingStorePacket.bind(persistence);
  persistence.incomingStorePacket = (client, packet) => store(client, { ...packet, payload: NO_PAYLOAD });
}
