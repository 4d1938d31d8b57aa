import { hostname } from 'node:os';
import { parse as parseCel } from '@marcbachmann/cel-js';
import { z } from 'zod';
import {
  bool,
  duration,
  fieldPath,
  itemsFieldPath,
  int,
  listen,
  logLevel,
  number,
  oneOf,
  secret,
  sourceId,
  text,
  unique,
  url,
} from '../common/config/fields.js';
import { isPlainObject } from '../common/config/env.js';
import { loadConfig, parseConfig, type DeepReadonly, type LoadOptions, type ParseOptions } from '../common/config/load.js';
import { certWithKey, clientCertFields, clientCertsNeedCa, limitsSchema, mqttUsersSchema, tlsServerFields, tlsServerSchema } from '../common/config/sections.js';
import type { TlsSections } from '../common/tls-server.js';
import { ALERT_KINDS } from './alerts/alert.js';
import { isMalformedHash } from './auth/password.js';
import { DEFAULT_RULE_COST_LIMIT, Rules } from './pipeline/rules/rules.js';
import { Transforms } from './pipeline/transforms/transforms.js';

/**
 * The gateway's config file (DESIGN §5, docs/config.md). Every default lives
 * here, with its unit; sizes are bytes and durations milliseconds once parsed.
 */

/** The host name as the gateway's name in `ingest.gateway`, with characters outside [A-Za-z0-9._:-] replaced by "-". */
export function defaultGatewayId(): string {
  return hostname().replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 128) || 'gateway';
}

const httpSchema = z
  .strictObject({
    listen: listen().prefault('127.0.0.1:7400'), // ingest, query, /metrics, /healthz
    tls: tlsServerSchema().optional(),
    maxConnections: int({ min: 1 }).optional(), // TCP connections at once; default: a quarter of the open-file limit, at most 4096
    headersTimeout: duration({ min: 1000, max: 60_000 }).prefault('10s'), // ms a connection may take to send its request headers (408, closed)
  })
  .prefault({});

const mqttSchema = z
  .strictObject({
    listen: listen().prefault('127.0.0.1:1883'), // plain MQTT 3.1.1
    tls: z.strictObject({ listen: listen().prefault('127.0.0.1:8883'), ...tlsServerFields }).superRefine(clientCertsNeedCa).optional(),
    ws: z.strictObject({ listen: listen().prefault('127.0.0.1:8083'), tls: tlsServerSchema().optional() }).optional(), // MQTT over WebSocket; with tls, wss
    sessionExpiry: duration({ min: 1000 }).prefault('2h'), // ms a persistent (clean=false) session outlives its client's connection
    maxConnections: int({ min: 1 }).optional(), // connections at once over every MQTT listener; default: half of the open-file limit
  })
  .prefault({});

export const SCOPES = ['ingest', 'query', 'admin'] as const;

const tokenSchema = z.strictObject({
  name: text(), // shown in logs and custody records instead of the token
  token: secret(), // or tokenFile
  scopes: z.array(z.enum(SCOPES)).min(1), // ingest: POST; query: GETs; admin: everything
});

const authSchema = z
  .strictObject({
    // Empty: the HTTP API is open, which is allowed on a loopback listener only (DESIGN §6).
    tokens: z
      .array(tokenSchema)
      .superRefine(unique((t) => t.name, 'name'))
      .superRefine(unique((t) => t.token, 'token', { hideValue: true }))
      .prefault([]),
    // Empty: anonymous MQTT clients, allowed on a loopback listener only.
    mqtt: mqttUsersSchema.superRefine((users, ctx) => {
      users.forEach((user, i) => {
        if (isMalformedHash(user.password)) {
          ctx.addIssue({ code: 'custom', path: [i, 'password'], message: 'malformed hash (expected scrypt$N=…,r=…,p=…$<salt>$<key>)' });
        }
      });
    }),
  })
  .prefault({});

/** A CEL expression over the event (`type == "auth.login" && outcome == "failure"`), checked for syntax here. */
function celExpression() {
  return text().superRefine((source, ctx) => {
    try {
      parseCel(source);
    } catch (err) {
      const first = (err instanceof Error ? err.message : String(err)).split('\n')[0];
      ctx.addIssue({ code: 'custom', message: `not a valid CEL expression: ${first}` });
    }
  });
}

const TRANSFORM_KINDS = ['mask', 'hash', 'rename', 'drop', 'set'] as const;

/** One pipeline transform: a mapping with exactly one of these keys, applied in list order. */
export type TransformStep =
  | { readonly mask: readonly string[] } // replace the fields' values with "***"
  | { readonly hash: readonly string[] } // replace the fields' values with their SHA-256
  | { readonly rename: Readonly<Record<string, string>> } // move field `from` to `to`
  | { readonly drop: readonly string[] } // remove the fields
  | { readonly set: Readonly<Record<string, z.core.util.JSONType>> }; // set fields to constant values

/** mask, hash and drop may step into arrays (`data.cards[].number`); rename and set may not. */
const fieldList = () => z.array(itemsFieldPath()).min(1);
const fieldMap = <V extends z.ZodType>(value: V) =>
  z.record(fieldPath(), value).refine((m) => Object.keys(m).length > 0, { error: 'must not be empty' });

const transformSchema = z
  .strictObject({
    mask: fieldList().optional(),
    hash: fieldList().optional(),
    rename: fieldMap(fieldPath()).optional(),
    drop: fieldList().optional(),
    set: fieldMap(z.json()).optional(),
  })
  .superRefine(oneOf(TRANSFORM_KINDS, { required: true }))
  .transform((step): TransformStep => {
    if (step.mask) return { mask: step.mask };
    if (step.hash) return { hash: step.hash };
    if (step.rename) return { rename: step.rename };
    if (step.drop) return { drop: step.drop };
    if (step.set) return { set: step.set };
    throw new Error('unreachable: oneOf guarantees one transform kind');
  });

const ruleSchema = z
  .strictObject({
    name: text(),
    if: celExpression(),
    tag: text().optional(), // added to the stored event's tags
    alert: bool().prefault(false), // send an alert (webhook, log, metric)
    drop: bool().prefault(false), // store a custody record, not the event
  })
  .superRefine((rule, ctx) => {
    if (rule.tag === undefined && !rule.alert && !rule.drop) {
      ctx.addIssue({ code: 'custom', message: 'the rule does nothing: give tag, alert or drop' });
    }
    // A rule's alerts are counted and logged under its name, the gateway's own under their kind (alerts_total{rule}).
    if ((ALERT_KINDS as readonly string[]).includes(rule.name)) {
      ctx.addIssue({ code: 'custom', path: ['name'], message: `"${rule.name}" is the name of an alert kind (${ALERT_KINDS.join(', ')}); choose another` });
    }
  });

const pipelineSchema = z
  .strictObject({
    dedup: z
      .strictObject({
        window: duration({ min: 1000 }).optional(), // ms an id is remembered; unset: 7 days, or storage.retention when shorter
        cacheSize: int({ min: 0 }).prefault(100_000), // ids held in memory in front of the on-disk index
      })
      .prefault({}),
    transforms: z.array(transformSchema).prefault([]),
    hashKey: secret().optional(), // the hash transform's HMAC key; or hashKeyFile (docs/config.md)
    rules: z.array(ruleSchema).superRefine(unique((r) => r.name, 'name')).prefault([]),
    ruleCostLimit: int({ min: 1000 }).prefault(DEFAULT_RULE_COST_LIMIT), // cost units one rule may spend on one event (rules/cost-meter.ts)
  })
  // Compiling each step and rule as the pipeline will catches what the shapes above cannot
  // (a protected field, an unknown CEL variable), so `config check` fails where start would.
  .superRefine((pipeline, ctx) => {
    pipeline.transforms.forEach((step, i) => {
      const problem = compileProblem(() => new Transforms([step]));
      if (problem) ctx.addIssue({ code: 'custom', path: ['transforms', i], message: problem });
    });
    pipeline.rules.forEach((rule, i) => {
      const problem = compileProblem(() => new Rules([rule]));
      if (problem) ctx.addIssue({ code: 'custom', path: ['rules', i, 'if'], message: problem.replace(/^rule "[^"]*":? /, '') });
    });
  })
  .prefault({});

function compileProblem(compile: () => unknown): string | undefined {
  try {
    compile();
    return undefined;
  } catch (err) {
    return (err instanceof Error ? err.message : String(err)).split('\n')[0];
  }
}

const retention = () => duration({ min: 3_600_000 }).prefault('90d'); // ms events are kept

const storageSchema = z
  .preprocess(
    (value) => (isPlainObject(value) && value.type === undefined ? { ...value, type: 'level' } : value),
    z.discriminatedUnion('type', [
      z.strictObject({ type: z.literal('level'), retention: retention() }), // LevelDB under dataDir
      // Parsed so a config naming it is checked, then refused: the PostgreSQL store (DESIGN §8) is not
      // built yet, and silently storing in LevelDB instead would break global dedup between replicas.
      z
        .strictObject({ type: z.literal('postgres'), url: url(['postgres', 'postgresql']), retention: retention() })
        .superRefine((_storage, ctx) => {
          ctx.addIssue({ code: 'custom', path: ['type'], message: 'postgres is not available in this version: the gateway stores in LevelDB only (type: level)' });
        }),
    ]),
  )
  .prefault({});

const pullFromSchema = z.strictObject({
  url: url(['http', 'https']), // the agent's pull listener
  every: duration({ min: 1000 }), // ms between pulls
  token: secret().optional(), // the agent's pull.token; or tokenFile
  ca: text().optional(), // PEM file of a private CA for https
  ...clientCertFields, // for an agent whose pull.tls requires a client certificate (mutual TLS)
  timeout: duration({ min: 1000 }).prefault('2m'), // ms one request to the agent may take, whole answer included
  retries: z
    .strictObject({
      tries: int({ min: 0 }).prefault(3), // further attempts after a failed pull
      delay: duration().prefault('5m'), // ms between attempts
    })
    .prefault({}),
}).superRefine(certWithKey);

const alertsSchema = z
  .strictObject({
    webhook: url(['http', 'https']).optional(), // POSTed JSON arrays of alerts (gateway/alerts); alerts are always logged and counted
    // For an https webhook: a private CA its certificate is signed by, and a client certificate if it asks for one.
    webhookTls: z
      .strictObject({ ca: text().optional(), ...clientCertFields })
      .superRefine(certWithKey)
      .optional(),
    volumeDrop: z
      .strictObject({
        window: duration({ min: 1000 }).prefault('5m'), // ms compared with the window before it
        below: number({ min: 0, max: 1 }).prefault(0.2), // alert when a source's volume falls under this fraction
      })
      .optional(),
    gaps: bool().prefault(true), // seq-gap: alert on a hole in an agent's seqs still open after backfill.grace
  })
  .superRefine((alerts, ctx) => {
    const https = alerts.webhook !== undefined && URL.canParse(alerts.webhook) && new URL(alerts.webhook).protocol === 'https:';
    if (alerts.webhookTls !== undefined && !https) {
      ctx.addIssue({ code: 'custom', path: ['webhookTls'], message: 'applies to an https:// alerts.webhook only' });
    }
  })
  .prefault({});

/** pipeline.dedup.window when unset (or storage.retention, when that is shorter). */
const DEFAULT_DEDUP_WINDOW_MS = 7 * 24 * 3600_000;

export const gatewayConfigSchema = z.strictObject({
  id: sourceId().default(defaultGatewayId), // recorded in each event's ingest.gateway
  dataDir: text().default('./data/gateway'),
  logLevel: logLevel().default('info'),
  http: httpSchema,
  mqtt: mqttSchema,
  auth: authSchema,
  pipeline: pipelineSchema,
  storage: storageSchema,
  pullFrom: z.array(pullFromSchema).superRefine(unique((p) => p.url, 'url')).prefault([]),
  // Gap backfill (docs/pull.md): a hole in an agent's seqs older than `grace` is pulled again.
  backfill: z
    .strictObject({
      enabled: bool().prefault(true),
      grace: duration().prefault('30s'), // ms a hole may stay open before it is asked for (pushes in flight fill most)
      every: duration({ min: 10 }).prefault('10s'), // ms between scans of the registry for holes
      tries: int({ min: 1 }).prefault(5), // command-channel requests for one hole, or looks at a hole in the agent's buffer, before it is recorded as lost
    })
    .prefault({}),
  alerts: alertsSchema,
  limits: limitsSchema,
  commit: z
    .strictObject({
      maxEvents: int({ min: 1 }).prefault(1000), // events per synced write
      maxWaitMs: duration().prefault(5), // ms a write waits for more events, when no commit is in flight
    })
    .prefault({}),
})
  .superRefine((config, ctx) => {
    // Retention deletes an event's dedup entry with it: past retention, a retry of the id would be stored again.
    const window = config.pipeline.dedup.window;
    if (window !== undefined && window > config.storage.retention) {
      ctx.addIssue({
        code: 'custom',
        path: ['pipeline', 'dedup', 'window'],
        message: 'must be at most storage.retention: retention deletes the dedup entries with the events, so an id would be stored again within the window',
      });
    }
  })
  // The default window is 7 days, or the retention when that is shorter: only a window set explicitly can be refused.
  .transform((config) => {
    const window = config.pipeline.dedup.window ?? Math.min(DEFAULT_DEDUP_WINDOW_MS, config.storage.retention);
    return { ...config, pipeline: { ...config.pipeline, dedup: { ...config.pipeline.dedup, window } } };
  });


/** The validated, frozen gateway config. */
export type GatewayConfig = DeepReadonly<z.output<typeof gatewayConfigSchema>>;

/** The gateway's TLS sections, listeners' and clients', with their paths (common/tls-server.ts checkTlsFiles). */
export function gatewayTlsSections(config: GatewayConfig): TlsSections {
  return [
    ['http.tls', config.http.tls],
    ['mqtt.tls', config.mqtt.tls],
    ['mqtt.ws.tls', config.mqtt.ws?.tls],
    ...config.pullFrom.map((p, i) => [`pullFrom[${i}]`, p] as const),
    ['alerts.webhookTls', config.alerts.webhookTls],
  ];
}

/** Validates a config already read (an object from YAML, JSON or code): `${VAR}`, secret files, schema. */
export function parseGatewayConfig(raw: unknown, options: ParseOptions = {}): GatewayConfig {
  return parseConfig(gatewayConfigSchema, raw, { kind: 'gateway', ...options });
}

/** Reads and validates a gateway config file; throws ConfigInvalidError listing every problem. */
export function loadGatewayConfig(file: string, options: LoadOptions = {}): Promise<GatewayConfig> {
  return loadConfig(gatewayConfigSchema, file, { kind: 'gateway', ...options });
}
