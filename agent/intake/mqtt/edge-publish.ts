import {
  decodePayload,
  deterministicId,
  dropLoneSurrogate,
  formatIssues,
  isBridgeNotification,
  MAX_STATUS_BYTES,
  tryParseTopic,
  validateEvent,
  withFields,
  type AuditEvent,
  type BatchItem,
  type Limits,
} from '../../../protocols/index.js';
import { intakeErrorEvent, RAW_EXCERPT_CHARS } from '../intake-error.js';
import type { DeviceIdentity } from './device-logins.js';

/** A publish the edge broker refuses: aedes then closes the connection (MQTT 3.1.1 has no PUBACK error code). */
export class PublishRefused extends Error {
  override readonly name = 'PublishRefused';
}

export type EdgeDecision =
  /** Presence or command traffic: passed through the broker, nothing buffered; `unretained`: its retain flag is cleared. */
  | { kind: 'pass'; unretained?: true }
  /** An events topic: these go to the buffer before the PUBACK; `invalid` of them are intake error events. */
  | { kind: 'events'; events: AuditEvent[]; invalid: string[] };

/**
 * Decides what one device PUBLISH means, without I/O (the broker does the
 * append). Mirrors the gateway's MQTT rules (DESIGN §5): with logins, the
 * topic's source must be the device's own and events may name another source
 * only where `relayFor` allows; an event without `source` takes the topic's,
 * one without `id` gets the gateway's deterministic id (source + payload as
 * received), so a device's QoS 1 retry dedups at the gateway although the
 * agent gives it a new seq.
 *
 * A bad event does not fail the publish: it becomes a `meteorzx.intake.error`
 * event for the device, buffered in its place, so its neighbours in the same
 * payload are kept and the device is not pushed into a retry loop.
 */
export function decideEdgePublish(identity: DeviceIdentity, topic: string, payload: Buffer, limits: Limits): EdgeDecision {
  // A local Mosquitto bridging devices to the agent announces itself here first. Not retained: any device may
  // name a bridge, and each name retained would stay in the broker's memory.
  if (isBridgeNotification(topic)) return { kind: 'pass', unretained: true };
  const parsed = tryParseTopic(topic);
  if (parsed === undefined) throw new PublishRefused(`topic "${topic.slice(0, 200)}" is not audit/<device>/events|status|cmd`);
  const own = identity.source;
  if (parsed.kind === 'cmd') {
    if (own !== undefined) throw new PublishRefused(`a device may not publish commands (${topic})`);
    // As on the gateway: a retained command would be replayed to the device at every resubscribe.
    return { kind: 'pass', unretained: true };
  }
  if (own !== undefined && parsed.source !== own) {
    throw new PublishRefused(`user "${identity.username ?? ''}" publishes as "${own}", not "${parsed.source}"`);
  }
  if (parsed.kind === 'status') {
    // Status is retained, so the broker keeps its payload in memory for good: bounded as on the gateway.
    if (payload.length > MAX_STATUS_BYTES) throw new PublishRefused(`status payload of ${payload.length} bytes is over ${MAX_STATUS_BYTES}`);
    return { kind: 'pass' };
  }

  const device = parsed.source;
  const events: AuditEvent[] = [];
  const invalid: string[] = [];
  const reject = (reason: string, raw: string, bytes: number, index: number | undefined) => {
    invalid.push(reason);
    const event = intakeErrorEvent(
      { intake: 'mqtt', topic, ...(index === undefined ? {} : { index }), reason, bytes, ...(raw.length > RAW_EXCERPT_CHARS ? { rawTruncated: true } : {}) },
      dropLoneSurrogate(raw.slice(0, RAW_EXCERPT_CHARS)),
    );
    event.source = device;
    // Deterministic too: a retried bad payload is one record at the gateway, not one per retry.
    events.push(withFields(event, { id: deterministicId(device, event) }));
  };

  let items: BatchItem[];
  try {
    items = decodePayload(payload, limits);
  } catch (err) {
    reject((err as Error).message, payload.toString('utf8'), payload.byteLength, undefined);
    return { kind: 'events', events, invalid };
  }
  for (const item of items) {
    if (item.error !== undefined) {
      reject(item.error, '', item.bytes, item.index);
      continue;
    }
    const result = validateEvent(item.value, limits, item.bytes);
    if (!result.ok) {
      reject(formatIssues(result.errors), JSON.stringify(item.value) ?? '', item.bytes, item.index);
      continue;
    }
    const input = result.event;
    const source = input.source ?? device;
    if (!identity.mayUseSource(source)) {
      reject(`source: this device may not send events for "${source}"`, JSON.stringify(item.value), item.bytes, item.index);
      continue;
    }
    events.push(withFields(input, { source, id: input.id ?? deterministicId(source, item.value) }));
  }
  return { kind: 'events', events, invalid };
}

