import { defineErrors } from '../protocols/errors.js';

/**
 * Errors of the gateway (pipeline, storage, ingress). Codes are stable:
 * scripts, HTTP answers and docs/errors.md refer to them.
 */
export const GatewayErrors = defineErrors({
  METEORZX_GATEWAY_OVERLOADED: {
    description: 'The ingest queue is full; retry after the Retry-After delay (HTTP 503, MQTT clients are slowed).',
    status: 503,
  },
  METEORZX_PIPELINE_CLOSED: { description: 'The pipeline is closing or closed and takes no more events.', status: 503 },
  METEORZX_STORAGE_CLOSED: { description: 'The storage was used before open() or after close().', status: 503 },
  METEORZX_STORAGE_FAILED: {
    description: 'A durable write or read failed (disk full, I/O error); nothing of the batch was acknowledged.',
    status: 503,
  },
  METEORZX_STORAGE_OPEN_FAILED: {
    description: 'The store cannot be opened at start: another process has it open (a gateway running on the same data dir), permissions, a file where a directory should be.',
  },
  METEORZX_STORAGE_CORRUPT: { description: 'Stored data cannot be decoded (a damaged block or key); `meteorzx verify` locates it.' },
  METEORZX_INVALID_CURSOR: { description: 'A query cursor is not one this gateway issued.', status: 400 },
  METEORZX_RULE_INVALID: { description: 'A pipeline rule does not compile (CEL syntax or type error) or names no action.' },
  METEORZX_TRANSFORM_INVALID: {
    description: 'A pipeline transform is not one of mask, hash, rename, drop, set, or targets a field the gateway owns.',
  },
  // Ingress, HTTP API and server (gateway/mqtt, gateway/http, gateway/server.ts).
  METEORZX_UNAUTHORIZED: { description: 'An HTTP request has no bearer token or an unknown one.', status: 401 },
  METEORZX_FORBIDDEN: { description: 'A bearer token lacks the scope the request needs (ingest, query or admin).', status: 403 },
  METEORZX_BAD_REQUEST: { description: 'A query parameter or body field is missing or invalid (since, until, limit, id/source; the url, after, until, token or ca of POST /v1/pull).', status: 400 },
  METEORZX_NOT_FOUND: { description: 'No such HTTP route.', status: 404 },
  METEORZX_INTERNAL: { description: 'An unexpected error answered a request; the gateway log has the details.', status: 500 },
  METEORZX_PORT_IN_USE: { description: 'A listener cannot bind its port because another process holds it; the message names the config key.' },
  METEORZX_LISTEN_FAILED: { description: 'A listener cannot bind its address (permission, unknown host); the message names the config key.' },
  METEORZX_INSECURE_BIND: {
    description: 'A listener binds a non-loopback address with no auth configured; add auth, bind 127.0.0.1, or pass --insecure.',
  },
  // Pull (gateway/pull, issue 5).
  METEORZX_PULL_FAILED: { description: 'An on-demand pull (POST /v1/pull, `meteorzx pull --into`) could not reach the agent or was refused by it.', status: 502 },
});

export type GatewayErrorCode = Exclude<keyof typeof GatewayErrors, 'specs'>;
