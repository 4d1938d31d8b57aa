import { readClientTls } from '../../common/tls-server.js';
import type { AgentConfig } from '../config.js';
import type { PushTransport } from './types.js';

/**
 * The push transport the config names (`push.http` or `push.mqtt`), or
 * undefined when it names none. Each is imported only when configured:
 * MQTT.js costs several MB of RSS, and the agent is budgeted.
 */
export async function createTransport(config: AgentConfig, epoch: string): Promise<PushTransport | undefined> {
  const { http, mqtt } = config.push;
  if (http !== undefined) {
    const { HttpTransport } = await import('./http-transport.js');
    return new HttpTransport({
      url: http.url,
      maxInFlight: http.maxInFlight,
      gzipAboveBytes: http.gzipAboveBytes,
      timeoutMs: http.timeoutMs,
      ...(http.token === undefined ? {} : { token: http.token }),
      ...readClientTls(http),
    });
  }
  if (mqtt !== undefined) {
    const { MqttTransport } = await import('./mqtt-transport.js');
    return new MqttTransport({
      url: mqtt.url,
      id: config.id,
      epoch,
      topicPrefix: mqtt.topicPrefix,
      maxInFlight: mqtt.maxInFlight,
      timeoutMs: mqtt.timeoutMs,
      // The command link reconnects on the push link's backoff.
      reconnect: config.push.backoff,
      ...(mqtt.clientId === undefined ? {} : { clientId: mqtt.clientId }),
      ...(mqtt.username === undefined ? {} : { username: mqtt.username }),
      ...(mqtt.password === undefined ? {} : { password: mqtt.password }),
      ...readClientTls(mqtt),
    });
  }
  return undefined;
}
