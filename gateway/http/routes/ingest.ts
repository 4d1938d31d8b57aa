import type { FastifyInstance, FastifyRequest } from 'fastify';
import { decodeBatch, isValidSource, type IngestResponse } from '../../../protocols/index.js';
import { identityOf, routeOf } from '../auth-hook.js';
import { GatewayErrors } from '../../errors.js';
import type { ApiContext } from '../api-context.js';
import { decodeContent, requireFormat } from '../body.js';
import { sendError } from '../reply-error.js';

function peerOf(req: FastifyRequest): string {
  return `${req.ip}:${req.socket.remotePort ?? 0}`;
}

/**
 * POST /v1/events (DESIGN §5): JSON event, JSON array or NDJSON, optionally
 * gzip. Answers 200 only after the pipeline has made every item durable
 * (stored, or recorded as duplicate or rejected with its reason).
 */
export function registerIngest(app: FastifyInstance, ctx: ApiContext): void {
  let inflight = 0;

  // Refuse before reading the body: under overload the cheapest answer is the early one.
  app.addHook('onRequest', async (req, reply) => {
    if (req.method !== 'POST' || routeOf(req) !== '/v1/events') return;
    if (inflight >= ctx.maxInflightIngests) {
      return sendError(reply, GatewayErrors.METEORZX_GATEWAY_OVERLOADED(`${inflight} ingest requests in progress; retry later`));
    }
    inflight += 1;
    // 'close' fires once on every response, sent or aborted.
    reply.raw.once('close', () => {
      inflight -= 1;
    });
  });

  app.post('/v1/events', async (req, reply) => {
    try {
      // Content-Type is checked first, so an unknown type is a 415 even when its body is also unreadable.
      const format = requireFormat(req.headers['content-type']);
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const body = await decodeContent(raw, req.headers['content-encoding'], ctx.limits.maxBodyBytes);
      const items = decodeBatch(body, format, ctx.limits, { keepText: true, jsonSequence: true });
      // An event that names no source takes the token's name (as an MQTT event takes its topic's).
      const identity = identityOf(req);
      const defaultSource = identity !== undefined && isValidSource(identity) ? { defaultSource: identity } : {};
      const result: IngestResponse = await ctx.ingestor.ingest(items, { method: 'http', peer: peerOf(req), ...defaultSource });
      return reply.code(200).send(result);
    } catch (err) {
      if (!(err as { status?: number }).status) req.log.error({ err }, 'ingest failed');
      return sendError(reply, err);
    }
  });
}
