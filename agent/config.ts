import { hostname } from 'node:os';
import { z } from 'zod';
import { TOPIC_ROOT } from '../protocols/topics.js';
import {
  duration,
  int,
  listen,
  logLevel,
  oneOf,
  secret,
  size,
  socketListen,
  sourceId,
  text,
  unique,
  url,
} from '../common/config/fields.js';
import { loadConfig, parseConfig, type DeepReadonly, type LoadOptions, type ParseOptions } from '../common/config/load.js';
import { certWithKey, clientCertFields, limitsSchema, mqttUsersSchema, tlsServerSchema } from '../common/config/sections.js';
import type { TlsSections } from '../common/tls-server.js';
import { isMalformedScryptHash } from '../common/scrypt-password.js';
import { isLoopback } from './http-helpers.js';

/**
 * The agent's config file (DESIGN §5, docs/config.md). Every default lives
 * here, with its unit; sizes are bytes and durations milliseconds once parsed.
 */

/** The host name as an agent id, with characters outside [A-Za-z0-9._:-] replaced by "-". */
export function defaultAgentId(): string {
  return hostname().replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 128) || 'agent';
}

const bufferSchema = z
  .strictObject({
    maxBytes: size({ min: 1024 }).prefault('1GiB'), // bytes on disk, retained delivered events included
    whenFull: z.enum(['block', 'drop-oldest', 'reject']).default('block'),
    retain: duration().prefault('7d'), // ms an event is kept; older undelivered events are dropped with a gap event
    durability: z.enum(['fsync', 'os']).default('fsync'), // fsync: survives power loss; os: survives a process crash
  })
  .prefault({});

const httpIntakeSchema = z.strictObject({
  listen: listen().prefault('127.0.0.1:7401'),
  maxBodyBytes: size({ min: 1024 }).optional(), // bytes after gunzip; default: limits.maxBodyBytes
  token: secret().optional(), // bearer token producers must send; required to bind a non-loopback address; or tokenFile
  tls: tlsServerSchema().optional(), // PEM files: serve HTTPS; requestClientCert for mutual TLS
  maxConnections: int({ min: 1 }).prefault(256), // TCP connections at once; more are refused and counted
  headersTimeout: duration({ min: 1000, max: 60_000 }).prefault('10s'), // ms a connection may take to send its request headers (408, closed)
});

const fileIntakeSchema = z.strictObject({
  path: text(),
  format: z.enum(['json', 'line']).default('json'), // json: one event per line; line: each line wrapped as an event
  startAt: z.enum(['beginning', 'end']).default('beginning'), // where to start in a file never read before
  type: z.string().min(1).max(128).default('log.line'), // event type of format `line`
  maxLineBytes: size({ min: 256 }).optional(), // bytes; longer lines are cut and flagged; default: limits.maxEventBytes
  closeInactive: duration({ min: 1 }).prefault('5m'), // ms a file read to its end stays open without growing; reopened when it changes
  rotateWait: duration({ min: 1 }).prefault('5s'), // ms a rotated file read to its end is kept open without growing (a writer may still write to it)
});

/**
 * A value or a non-empty list of them. Not z.union: its error for a bad
 * single value would be "does not match any allowed form" instead of the
 * value's own message.
 */
function oneOrMany<T extends z.ZodType>(item: T) {
  const many = z.array(item).min(1);
  return z.unknown().transform((input, ctx): z.output<T> | z.output<T>[] => {
    const result = Array.isArray(input) ? many.safeParse(input) : item.safeParse(input);
    if (result.success) return result.data as z.output<T> | z.output<T>[];
    for (const { message, ...issue } of result.error.issues) {
      // Built-in issues are re-raised without zod's default wording, so the config's error map words them.
      const at = issue.path.reduce<unknown>((v, k) => (v as Record<PropertyKey, unknown> | undefined)?.[k as PropertyKey], input);
      ctx.addIssue({ ...issue, input: at, ...(issue.code === 'custom' ? { message } : {}) } as z.core.$ZodRawIssue);
    }
    return z.NEVER;
  });
}

const syslogIntakeSchema = z
  .strictObject({
    listen: oneOrMany(socketListen()), // one address or a list (e.g. udp, tcp and tls)
    maxMessageBytes: size({ min: 480 }).prefault('8KiB'), // bytes per message (frame); longer ones are dropped and counted
    maxConnections: int({ min: 1 }).prefault(256), // TCP connections at once; more are refused
    type: z.string().min(1).max(128).optional(), // event type; default syslog.<facility>.<severity>
    tls: tlsServerSchema().optional(), // PEM files of the tls:// listeners (RFC 5425); requestClientCert for mutual TLS
  })
  .superRefine((syslog, ctx) => {
    const tlsListeners = (Array.isArray(syslog.listen) ? syslog.listen : [syslog.listen]).some((l) => l.protocol === 'tls');
    if (tlsListeners && syslog.tls === undefined) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'a tls:// listen address needs tls.cert and tls.key' });
    if (!tlsListeners && syslog.tls !== undefined) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'is for tls:// listen addresses, and none is given' });
  });

const serialIntakeSchema = z.strictObject({
  path: text(),
  baudRate: int({ min: 50, max: 4_000_000 }).prefault(9600), // bits/s
  delimiter: z.string().min(1).max(8).default('\n'), // ends one record
  format: z.enum(['json', 'line']).default('line'),
  type: z.string().min(1).max(256).default('serial.line'), // event type of a `line` record
  source: sourceId().optional(), // source of `line` records and of json events without one; default: the agent id
  maxLineBytes: size({ min: 256 }).optional(), // bytes of one record before it is cut; default: limits.maxEventBytes
});

/** DESIGN §6 for the edge broker: anonymous devices only on loopback; a malformed hash is named at start. */
function edgeBrokerAuth(mqtt: { listen: { host: string }; users: readonly { password: string }[] }, ctx: z.core.$RefinementCtx): void {
  mqtt.users.forEach((user, i) => {
    if (isMalformedScryptHash(user.password)) {
      ctx.addIssue({ code: 'custom', path: ['users', i, 'password'], message: 'malformed hash (expected scrypt$N=…,r=…,p=…$<salt>$<key>)' });
    }
  });
  if (mqtt.users.length === 0 && !isLoopback(mqtt.listen.host)) {
    ctx.addIssue({ code: 'custom', path: ['users'], message: `required when listen binds ${mqtt.listen.host}, a non-loopback address (anonymous devices only on loopback)` });
  }
}

const intakeSchema = z
  .strictObject({
    http: httpIntakeSchema.optional(), // POST /v1/events
    files: z.array(fileIntakeSchema).superRefine(unique((f) => f.path, 'path')).prefault([]),
    maxOpenFiles: int({ min: 1 }).optional(), // files intake.files holds open at once; more wait their turn; default: a quarter of `ulimit -n`
    syslog: syslogIntakeSchema.optional(),
    serial: z.array(serialIntakeSchema).superRefine(unique((s) => s.path, 'path')).prefault([]),
    mqtt: z
      .strictObject({
        listen: listen().prefault('127.0.0.1:1883'), // an edge box's local broker for devices
        users: mqttUsersSchema, // empty: anonymous devices, allowed on loopback only
        maxConnections: int({ min: 1 }).prefault(1024), // device connections at once; more are refused and counted
        sessionExpiry: duration({ min: 1000 }).prefault('2h'), // ms a persistent (clean=false) session outlives its device's connection
        tls: tlsServerSchema().optional(), // PEM files: the listener speaks MQTT over TLS; requestClientCert for mutual TLS
      })
      .superRefine(edgeBrokerAuth)
      .optional(),
  })
  // No `intake` section at all: the HTTP intake alone, so an empty config gives a working agent.
  .prefault({ http: {} });

const httpPushSchema = z.strictObject({
  url: url(['http', 'https']), // the gateway's POST /v1/events
  token: secret().optional(), // bearer token with the ingest scope; or tokenFile
  ca: text().optional(), // PEM file of a private CA for https
  ...clientCertFields,
  gzipAboveBytes: size().prefault('1KiB'), // bytes; smaller bodies go uncompressed
  maxInFlight: int({ min: 1, max: 64 }).prefault(4), // requests awaiting an answer
  timeoutMs: duration({ min: 1 }).prefault('30s'), // ms for one request
}).superRefine(certWithKey);

const mqttPushSchema = z.strictObject({
  url: url(['mqtt', 'mqtts', 'ws', 'wss']),
  username: text().optional(),
  password: secret().optional(), // or passwordFile
  clientId: text().optional(), // default: meteorzx-agent-<id>
  ca: text().optional(), // PEM file of a private CA for mqtts/wss
  ...clientCertFields,
  topicPrefix: z
    .string()
    .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, { error: 'expected topic levels without wildcards, e.g. audit' })
    .default(TOPIC_ROOT), // topics are <topicPrefix>/<id>/events|status|cmd
  maxInFlight: int({ min: 1, max: 64 }).prefault(4), // QoS 1 batches awaiting PUBACK
  timeoutMs: duration({ min: 1 }).prefault('30s'), // ms for one PUBACK
}).superRefine(certWithKey);

const pushSchema = z
  .strictObject({
    http: httpPushSchema.optional(),
    mqtt: mqttPushSchema.optional(),
    batch: z
      .strictObject({
        maxEvents: int({ min: 1 }).prefault(500), // events per push; capped by limits.maxBatchEvents
        maxWaitMs: duration().prefault(100), // ms a partial batch waits for more events
      })
      .prefault({}),
    backoff: z
      .strictObject({
        initialMs: duration({ min: 1 }).prefault('100ms'), // ceiling of the first retry's delay
        maxMs: duration({ min: 1 }).prefault('30s'), // largest delay between retries
      })
      .prefault({}),
    breaker: z
      .strictObject({
        threshold: int({ min: 1 }).prefault(5), // consecutive failed rounds that open the circuit
        cooldownMs: duration({ min: 1 }).prefault('10s'), // ms the circuit stays open before one probe
      })
      .prefault({}),
  })
  // Neither http nor mqtt: events stay in the buffer for pull.
  .superRefine(oneOf(['http', 'mqtt'], { required: false }))
  .prefault({});

const pullSchema = z
  .strictObject({
    listen: listen().prefault('127.0.0.1:7402'), // GET /v1/events, /v1/status, /metrics
    token: secret().optional(), // required to bind a non-loopback address; or tokenFile
    tls: tlsServerSchema().optional(), // PEM files: serve HTTPS (docs/pull.md); requestClientCert for mutual TLS
    maxConnections: int({ min: 1 }).prefault(64), // TCP connections at once; idle ones give way to a newcomer, else it is refused
  })
  .prefault({});

export const agentConfigSchema = z
  .strictObject({
    id: sourceId().default(defaultAgentId),
    dataDir: text().default('./data/agent'), // LevelDB buffer and file checkpoints
    logLevel: logLevel().default('info'),
    buffer: bufferSchema,
    intake: intakeSchema,
    push: pushSchema,
    pull: pullSchema,
    limits: limitsSchema,
  })
  .superRefine((config, ctx) => {
    if (config.buffer.maxBytes < config.limits.maxEventBytes) {
      ctx.addIssue({ code: 'custom', path: ['buffer', 'maxBytes'], message: 'must be at least limits.maxEventBytes' });
    }
    if (config.push.batch.maxEvents > config.limits.maxBatchEvents) {
      ctx.addIssue({ code: 'custom', path: ['push', 'batch', 'maxEvents'], message: 'must be at most limits.maxBatchEvents' });
    }
    if (config.push.backoff.initialMs > config.push.backoff.maxMs) {
      ctx.addIssue({ code: 'custom', path: ['push', 'backoff', 'initialMs'], message: 'must be at most push.backoff.maxMs' });
    }
  })
  .transform((config) => {
    const http = config.intake.http;
    const httpWithLimit = http && { ...http, maxBodyBytes: http.maxBodyBytes ?? config.limits.maxBodyBytes };
    return { ...config, intake: { ...config.intake, http: httpWithLimit } };
  });

/** The validated, frozen agent config. */
export type AgentConfig = DeepReadonly<z.output<typeof agentConfigSchema>>;

/** The agent's TLS sections with their paths, its listeners' and its push's (common/tls-server.ts checkTlsFiles). */
export function agentTlsSections(config: AgentConfig): TlsSections {
  const { intake, pull, push } = config;
  return [
    ['intake.http.tls', intake.http?.tls],
    ['intake.syslog.tls', intake.syslog?.tls],
    ['intake.mqtt.tls', intake.mqtt?.tls],
    ['pull.tls', pull.tls],
    ['push.http', push.http],
    ['push.mqtt', push.mqtt],
  ];
}

/** Validates a config already read (an object from YAML, JSON or code): `${VAR}`, secret files, schema. */
export function parseAgentConfig(raw: unknown, options: ParseOptions = {}): AgentConfig {
  return parseConfig(agentConfigSchema, raw, { kind: 'agent', ...options });
}

/** Reads and validates an agent config file; throws ConfigInvalidError listing every problem. */
export function loadAgentConfig(file: string, options: LoadOptions = {}): Promise<AgentConfig> {
  return loadConfig(agentConfigSchema, file, { kind: 'agent', ...options });
}
