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
