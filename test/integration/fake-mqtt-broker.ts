import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';

export interface FakeBrokerPacket {
  cmd: string;
  topic?: string;
  payload?: Buffer | string;
  messageId?: number;
  qos?: number;
}

/** What the broker does with a PUBLISH: PUBACK it, say nothing, or cut the connection. */
export type PublishAnswer = 'ack' | 'ignore' | 'drop';

/** How the broker answers a CONNECT: its CONNACK return code, and whether it closes the connection right after. */
export interface ConnectAnswer {
  returnCode: 0 | 5;
  closeAfterConnack: boolean;
}

/**
 * A minimal MQTT 3.1.1 broker for the failures a real one will not stage on
 * demand: CONNACKs every CONNECT (or refuses it, or drops the client right
 * after: `connect`), answers PINGREQ and SUBSCRIBE, and lets the test decide
 * each PUBLISH's fate. Counts connections.
 */
export class FakeMqttBroker {
  readonly packets: FakeBrokerPacket[] = [];
  connections = 0;
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  constructor(
    private readonly onPublish: (packet: FakeBrokerPacket, socket: Socket) => PublishAnswer,
    private readonly connect: ConnectAnswer = { returnCode: 0, closeAfterConnack: false },
  ) {}

  async start(): Promise<number> {
    this.server = createServer((socket) => {
      this.connections += 1;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      const write = (packet: object) => {
        if (!socket.destroyed) socket.write(mqttPacket.generate(packet as mqttPacket.Packet));
      };
      parser.on('packet', (p: FakeBrokerPacket) => {
        this.packets.push(p);
        if (p.cmd === 'connect') {
          write({ cmd: 'connack', returnCode: this.connect.returnCode, sessionPresent: false });
          if (this.connect.closeAfterConnack) setImmediate(() => socket.destroy());
        } else if (p.cmd === 'pingreq') write({ cmd: 'pingresp' });
        else if (p.cmd === 'subscribe') write({ cmd: 'suback', messageId: p.messageId, granted: [1] });
        else if (p.cmd === 'disconnect') socket.end();
        else if (p.cmd === 'publish') {
          const answer = this.onPublish(p, socket);
          if (answer === 'ack' && (p.qos ?? 0) > 0) write({ cmd: 'puback', messageId: p.messageId });
          if (answer === 'drop') socket.destroy();
        }
      });
      socket.on('data', (d: Buffer) => parser.parse(d));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return (this.server?.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}

/** `p`'s value, or 'timeout' when it has not settled within ms. */
export function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return Promise.race([p, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms).unref())]);
}
