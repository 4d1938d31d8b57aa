import { createRequire } from 'node:module';
import mqtt, { type MqttClient } from 'mqtt';

/** Connects an MQTT 3.1.1 client (no reconnects) and registers its close with `closers`. */
export async function connectClient(closers: (() => Promise<unknown>)[], port: number, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, protocolVersion: 4, ...opts });
  closers.push(() => client.endAsync(true));
  return client;
}

/** Resolves with 'closed' when the broker drops the connection before acking. */
export function publishOrClose(client: MqttClient, topic: string, payload: string): Promise<'acked' | 'closed'> {
  return new Promise((resolve) => {
    client.once('close', () => resolve('closed'));
    client.publish(topic, payload, { qos: 1 }, (err) => resolve(err ? 'closed' : 'acked'));
  });
}

/**
 * How many packet-id Buffers mqtt-packet has cached: 65,536 once anything wrote
 * a packet with its default (cacheNumbers), 0 while a broker of ours has it off.
 */
export function packetIdCacheSize(): number {
  const numbers = createRequire(createRequire(import.meta.url).resolve('aedes'))('mqtt-packet/numbers.js') as { cache: Record<number, Buffer> };
  return Object.keys(numbers.cache).length;
}
