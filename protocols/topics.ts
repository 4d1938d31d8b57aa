import { SOURCE_RE } from './envelope.js';
import { ProtocolErrors } from './errors.js';

/** MQTT topic layout (DESIGN §5): audit/<source>/events | status | cmd. */
export type TopicKind = 'events' | 'status' | 'cmd';

export const TOPIC_ROOT = 'audit';

/**
 * Largest payload a broker of ours takes on audit/<source>/status (an
 * agent's presence is ≈ 150 B): status messages are retained, and a retained
 * payload stays in the broker's memory.
 */
export const MAX_STATUS_BYTES = 4096;
const KINDS: ReadonlySet<string> = new Set(['events', 'status', 'cmd']);

export function isValidSource(source: string): boolean {
  return SOURCE_RE.test(source);
}

function topicFor(source: string, kind: TopicKind): string {
  if (!isValidSource(source)) {
    throw ProtocolErrors.METEORZX_INVALID_SOURCE(`invalid source "${source.slice(0, 140)}": must match [A-Za-z0-9._:-]{1,128}`, {
      userError: true,
    });
  }
  return `${TOPIC_ROOT}/${source}/${kind}`;
}

export const eventsTopic = (source: string): string => topicFor(source, 'events');
export const statusTopic = (source: string): string => topicFor(source, 'status');
export const cmdTopic = (source: string): string => topicFor(source, 'cmd');

export interface ParsedTopic {
  source: string;
  kind: TopicKind;
}

/**
 * Parses a concrete topic. Wildcards (`+`, `#`), empty levels, extra levels
 * and sources outside the alphabet are errors, never a match.
 */
export function parseTopic(topic: string): ParsedTopic {
  const fail = (why: string) =>
    ProtocolErrors.METEORZX_INVALID_TOPIC(`invalid topic "${topic.slice(0, 200)}": ${why}`, { userError: true });
  if (topic.includes('+') || topic.includes('#')) throw fail('wildcards are not allowed in a publish topic');
  const parts = topic.split('/');
  if (parts.length !== 3 || parts[0] !== TOPIC_ROOT) throw fail('expected audit/<source>/events|status|cmd');
  const [, source, kind] = parts as [string, string, string];
  if (!isValidSource(source)) throw fail('source must match [A-Za-z0-9._:-]{1,128}');
  if (!KINDS.has(kind)) throw fail(`unknown kind "${kind.slice(0, 40)}" (events, status or cmd)`);
  return { source, kind: kind as TopicKind };
}

/** Like parseTopic, but returns undefined instead of throwing. */
export function tryParseTopic(topic: string): ParsedTopic | undefined {
  try {
    return parseTopic(topic);
  } catch {
    return undefined;
  }
}

// Mosquitto's default notification_topic, `$SYS/broker/connection/<remote_clientid>/state`.
const BRIDGE_STATE_RE = /^\$SYS\/broker\/connection\/[^/+#]{1,256}\/state$/;

/**
 * A Mosquitto bridge's connection notification. With `notifications true`
 * (its default) a bridge publishes `1` to this topic on the remote broker
 * as soon as it connects, and leaves `0` there as its will; a broker that
 * refuses the publish (closing the connection, in MQTT 3.1.1) keeps the
 * bridge from ever forwarding an event. It carries no events.
 */
export function isBridgeNotification(topic: string): boolean {
  return BRIDGE_STATE_RE.test(topic);
}
