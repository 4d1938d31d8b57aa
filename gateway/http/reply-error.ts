import type { FastifyReply } from 'fastify';
import { isMeteorError, type ErrorResponse } from '../../protocols/index.js';
import { GatewayErrors } from '../errors.js';

/** Seconds a client should wait after a 429/503 (DESIGN §3.5). */
export const RETRY_AFTER_SECONDS = 1;

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message: string;
}

/** Fastify's own errors, translated into our stable codes. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'METEORZX_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'METEORZX_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'METEORZX_BODY_UNREADABLE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'METEORZX_BODY_UNREADABLE',
};

/** Status and `{error, code}` body for any error a route or fastify raised. */
export function errorAnswer(err: unknown): { status: number; body: ErrorResponse } {
  if (isMeteorError(err)) return { status: err.status ?? 500, body: { error: err.message, code: err.code } };
  const e = err as FastifyLikeError;
  const mapped = e.code === undefined ? undefined : FASTIFY_CODES[e.code];
  if (mapped !== undefined && e.statusCode !== undefined) return { status: e.statusCode, body: { error: e.message, code: mapped } };
  if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) {
    // A client mistake fastify caught (bad header, aborted body): the message is safe to show.
    return { status: e.statusCode, body: { error: e.message, code: 'METEORZX_BAD_REQUEST' } };
  }
  const internal = GatewayErrors.METEORZX_INTERNAL('internal error (see the gateway log)');
  return { status: 500, body: { error: internal.message, code: internal.code } };
}

export function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  const { status, body } = errorAnswer(err);
  if (status === 503 || status === 429) void reply.header('Retry-After', String(RETRY_AFTER_SECONDS));
  return reply.code(status).type('application/json').send(body);
}
