import { Transform } from 'node:stream';
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
  /**
   * Body bytes held by the ingests in progress, raw and decompressed. The slots alone let 64 bodies of
   * 8 MiB be read and parsed at once: 64 concurrent 8 MB posts took the gateway from 94 to 866 MB RSS, and
   * it kept it. As the agent's intake does, past the budget a request is answered 503 + Retry-After.
   */
  let pendingBytes = 0;
  const maxPending = ctx.maxPendingIngestBytes ?? 64 * 1024 * 1024;
  const held = new WeakMap<FastifyRequest, number>();
  const hold = (req: FastifyRequest, bytes: number): void => {
    if (pendingBytes + bytes > maxPending) {
      throw GatewayErrors.METEORZX_GATEWAY_OVERLOADED(`ingests in progress hold ${pendingBytes} body bytes (the limit is ${maxPending}); retry later`);
    }
    pendingBytes += bytes;
    held.set(req, (held.get(req) ?? 0) + bytes);
  };
  const release = (req: FastifyRequest): void => {
    pendingBytes -= held.get(req) ?? 0;
    held.delete(req);
  };
  const isIngest = (req: FastifyRequest): boolean => req.method === 'POST' && routeOf(req) === '/v1/events';

  // Refuse before reading the body: under overload the cheapest answer is the early one.
  app.addHook('onRequest', async (req, reply) => {
    if (!isIngest(req)) return;
    if (inflight >= ctx.maxInflightIngests) {
      return sendError(reply, GatewayErrors.METEORZX_GATEWAY_OVERLOADED(`${inflight} ingest requests in progress; retry later`));
    }
    inflight += 1;
    // 'close' fires once on every response, sent or aborted.
    reply.raw.once('close', () => {
      inflight -= 1;
      release(req);
    });
    // A declared length is held before the body is read (or invited: Expect: 100-continue); one over the
    // body limit is left to the 413 of the body's own check.
    const declared = Number(req.headers['content-length'] ?? 0);
    if (Number.isSafeInteger(declared) && declared > 0 && declared <= ctx.limits.maxBodyBytes) {
      try {
        hold(req, declared);
      } catch (err) {
        return sendError(reply, err);
      }
    }
  });

  // A body without a declared length (chunked) is held as it arrives.
  app.addHook('preParsing', async (req, _reply, payload) => {
    if (!isIngest(req) || held.has(req)) return payload;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        try {
          hold(req, chunk.byteLength);
          done(null, chunk);
        } catch (err) {
          done(err as Error);
        }
      },
    });
    payload.on('error', (err) => counted.destroy(err));
    return payload.pipe(counted);
  });

  app.post('/v1/events', async (req, reply) => {
    try {
      // Content-Type is checked first, so an unknown type is a 415 even when its body is also unreadable.
      const format = requireFormat(req.headers['content-type']);
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const body = await decodeContent(raw, req.headers['content-encoding'], ctx.limits.maxBodyBytes);
      if (body !== raw) hold(req, body.byteLength);
      const items = decodeBatch(body, format, ctx.limits, { keepText: true, jsonSequence: true });
      // An event that names no source takes the token's name (as an MQTT event takes its topic's).
      const identity = identityOf(req);
      const defaultSource = identity !== undefined && isValidSource(identity) ? { defaultSource: identity } : {};
      const result: IngestResponse = await ctx.ingestor.ingest(items, { method: 'http', peer: peerOf(req), ...defaultSource });
      return reply.code(200).send(result);
    } catch (err) {
      if (!(err as { status?: number }).status) req.log.error({ err }, 'ingest failed');
      return sendError(reply, err);
    } finally {
      // Released here too: a client that leaves while its body is decompressed closes the response before the
      // decompressed bytes are held, and those were otherwise counted for good.
      release(req);
    }
  });
}
