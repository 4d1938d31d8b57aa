import { z } from 'zod';
import { bool, int, secret, size, sourceId, sourcePattern, text, unique } from './fields.js';

/**
 * Sections both config files share. Defaults match protocols/limits.ts
 * (DEFAULT_LIMITS), which code uses when no config is given.
 */
export const limitsSchema = z
  .strictObject({
    maxEventBytes: size({ min: 256 }).prefault('64KiB'), // bytes, one event's JSON text
    maxDepth: int({ min: 1, max: 1000 }).prefault(32), // JSON nesting levels in one event
    maxBatchEvents: int({ min: 1 }).prefault(1000), // events per HTTP body or MQTT payload
    maxBodyBytes: size({ min: 1024 }).prefault('8MiB'), // bytes of an HTTP body after gunzip
  })
  .prefault({});

/** A TLS listener's files (gateway http.tls and mqtt.tls, agent intake.http.tls and pull.tls): common/tls-server.ts reads them. */
export const tlsServerFields = {
  cert: text(), // PEM file
  key: text(), // PEM file
  ca: text().optional(), // PEM file of the CA client certificates are checked against
  requestClientCert: bool().prefault(false), // mutual TLS: clients must present a certificate signed by `ca`
};

/**
 * Refinement of a `tls` section: requestClientCert needs `ca`. Without one Node checks client
 * certificates against its bundled public roots, so any publicly issued client certificate would pass.
 */
export function clientCertsNeedCa(tls: { ca?: string | undefined; requestClientCert: boolean }, ctx: z.RefinementCtx): void {
  if (tls.requestClientCert && tls.ca === undefined) {
    ctx.addIssue({ code: 'custom', path: ['ca'], message: 'required with requestClientCert: the CA client certificates must be signed by' });
  }
}

/** A TLS listener's section (tlsServerFields), with requestClientCert requiring `ca`. */
export function tlsServerSchema() {
  return z.strictObject(tlsServerFields).superRefine(clientCertsNeedCa);
}

/** A client certificate for a peer that asks for one (its requestClientCert): agent push sections, gateway pullFrom. */
export const clientCertFields = {
  cert: text().optional(), // PEM file of the client certificate (mutual TLS)
  key: text().optional(), // PEM file of that certificate's private key
};

/** Refinement of clientCertFields: both files or neither. */
export function certWithKey(tls: { cert?: string | undefined; key?: string | undefined }, ctx: z.RefinementCtx): void {
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    ctx.addIssue({ code: 'custom', path: [tls.cert === undefined ? 'cert' : 'key'], message: 'give the client certificate and its key together (cert and key)' });
  }
}

/**
 * An MQTT login: the gateway's `auth.mqtt` and the edge agent's
 * `intake.mqtt.users`. `source` defaults to the username.
 */
export const mqttUserSchema = z
  .strictObject({
    username: text(),
    password: secret(), // plain, or a `scrypt$...` hash (docs/mqtt.md); or passwordFile
    source: sourceId().optional(),
    relayFor: z.array(sourcePattern()).prefault([]), // other sources this login may publish for
  })
  .transform((user, ctx) => {
    if (user.source !== undefined) return { ...user, source: user.source };
    const parsed = sourceId().safeParse(user.username);
    if (!parsed.success) {
      ctx.addIssue({ code: 'custom', path: ['source'], message: 'required: the username is not a valid source id' });
      return z.NEVER;
    }
    return { ...user, source: parsed.data };
  });

export const mqttUsersSchema = z.array(mqttUserSchema).superRefine(unique((u) => u.username, 'username')).prefault([]);
