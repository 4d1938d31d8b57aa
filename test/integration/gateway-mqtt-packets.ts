import { connect, type Socket } from 'node:net';

/**
 * Hand-built MQTT 3.1.1 packets, for input no well-behaved client library
 * will send (a wildcard in a PUBLISH topic): the test must reach the broker.
 */
function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

export function connectPacket(clientId: string): Buffer {
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0x02, 0, 60]), str(clientId)]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

export function publishQos1(topic: string, messageId: number, payload: Buffer | string): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(messageId);
  const body = Buffer.concat([str(topic), id, Buffer.from(payload)]);
  return Buffer.concat([Buffer.from([0x32]), remainingLength(body.length), body]);
}

/**
 * The start of a QoS 1 PUBLISH whose fixed header declares `declared` bytes
 * of remaining length; the caller streams (some of) the rest.
 */
export function publishHeader(topic: string, messageId: number, declared: number): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(messageId);
  return Buffer.concat([Buffer.from([0x32]), remainingLength(declared), str(topic), id]);
}

export interface RawOutcome {
  /** Packet types received, by their first byte's high nibble: 2 CONNACK, 4 PUBACK. */
  received: number[];
  closedByServer: boolean;
}

/** Connects, sends a CONNECT then `packets`, and reports what came back until close or `waitMs`. */
export function rawSession(port: number, packets: Buffer[], waitMs = 2000): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const received: number[] = [];
    let done = false;
    const sock: Socket = connect(port, '127.0.0.1', () => {
      sock.write(connectPacket(`raw-${Math.random().toString(36).slice(2, 10)}`));
    });
    let buf = Buffer.alloc(0);
    let sent = false;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const len = buf[1] as number; // every packet the broker sends us here is short
        if (buf.length < 2 + len) break;
        received.push((buf[0] as number) >> 4);
        buf = buf.subarray(2 + len);
      }
      if (!sent && received.includes(2)) {
        sent = true;
        for (const p of packets) sock.write(p);
      }
    });
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ received, closedByServer });
    };
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
    const timer = setTimeout(() => finish(false), waitMs);
  });
}
