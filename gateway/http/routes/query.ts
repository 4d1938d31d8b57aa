import type { FastifyInstance, FastifyReply } from 'fastify';
import { NDJSON, SOURCE_RE } from '../../../protocols/index.js';
import type { DamagedBlock, EventQuery } from '../../storage/types.js';
import { GatewayErrors } from '../../errors.js';
import type { ApiContext } from '../api-context.js';
import { sendError } from '../reply-error.js';
import { intParam, one, onlyParams, timeParam, type QueryString } from './query-params.js';

/** Page size when `limit` is not given, and the most one page may hold. */
export const DEFAULT_PAGE = 1000;
export const MAX_PAGE = 10_000;
/** Sources per page of GET /v1/sources, by default and at most. */
export const SOURCES_PAGE = 10_000;

/** A source id given as `name`, checked against SOURCE_RE. */
function sourceParam(q: QueryString, name: string): string | undefined {
  const value = one(q, name);
  if (value !== undefined && !SOURCE_RE.test(value)) throw GatewayErrors.METEORZX_BAD_REQUEST(`${name} must match ${String(SOURCE_RE)}`);
  return value;
}

/**
 * Names the blocks a page left out because they do not decode, in the
 * `X-Damaged-Blocks` header (a JSON array: the body is the NDJSON of what
 * was read), and counts and logs them. Outside ASCII is escaped, so any
 * error text is a valid header value.
 */
function reportDamage(ctx: ApiContext, reply: FastifyReply, damaged: readonly DamagedBlock[] | undefined): void {
  if (damaged === undefined || damaged.length === 0) return;
  const json = JSON.stringify(damaged).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  void reply.header('X-Damaged-Blocks', json);
  ctx.onDamagedRead?.(damaged);
  reply.log.warn({ damaged }, 'a read left out stored blocks that do not decode (meteorzx verify names them)');
}

function ndjson(rows: readonly unknown[]): string {
  let out = '';
  for (const row of rows) out += `${JSON.stringify(row)}\n`;
  return out;
}

/** GET /v1/events, /v1/sources, /v1/custody (DESIGN §5). */
export function registerQuery(app: FastifyInstance, ctx: ApiContext): void {
  app.get('/v1/events', async (req, reply) => {
    try {
      const q = req.query as QueryString;
      onlyParams(q, ['id', 'source', 'type', 'since', 'until', 'limit', 'cursor']);
      // A page is one string: at most what one ingest body may be, however large the events (10,000 × 64 KiB is past V8's string limit).
      const query: EventQuery = { limit: intParam(q, 'limit', DEFAULT_PAGE, MAX_PAGE), maxBytes: ctx.limits.maxBodyBytes };
      const id = one(q, 'id');
      const source = one(q, 'source');
      const type = one(q, 'type');
      if (id !== undefined && id.length > 128) throw GatewayErrors.METEORZX_BAD_REQUEST('id: an event id is at most 128 characters');
      const since = timeParam(q, 'since');
      const until = timeParam(q, 'until');
      const cursor = one(q, 'cursor');
      if (id !== undefined) query.id = id;
      if (source !== undefined) query.source = source;
      if (type !== undefined) query.type = type;
      if (since !== undefined) query.since = since;
      if (until !== undefined) query.until = until;
      if (cursor !== undefined) query.cursor = cursor;
      const page = await ctx.storage.query(query);
      if (page.nextCursor !== undefined) void reply.header('X-Next-Cursor', page.nextCursor);
      reportDamage(ctx, reply, page.damaged);
      return reply.type(NDJSON).send(ndjson(page.events));
    } catch (err) {
      return sendError(reply, err);
    }
  });

  app.get('/v1/sources', async (req, reply) => {
    try {
      const q = req.query as QueryString;
      onlyParams(q, ['source', 'after', 'limit']);
      const source = sourceParam(q, 'source');
      const after = sourceParam(q, 'after');
      // A page: the whole list of a gateway that anyone with the ingest scope can grow need not fit in one answer.
      const filter = source !== undefined ? { source } : { limit: intParam(q, 'limit', SOURCES_PAGE, SOURCES_PAGE), ...(after === undefined ? {} : { after }) };
      const sources = await ctx.storage.sources(filter);
      return reply.send(ctx.pulls === undefined ? sources : { ...sources, pulls: await ctx.pulls.section(source) });
    } catch (err) {
      return sendError(reply, err);
    }
  });

  app.get('/v1/custody', async (req, reply) => {
    try {
      const q = req.query as QueryString;
      onlyParams(q, ['id', 'source', 'limit', 'cursor']);
      const id = one(q, 'id');
      const source = one(q, 'source');
      if (id === undefined && source === undefined) {
        throw GatewayErrors.METEORZX_BAD_REQUEST('give id=<event id> or source=<source>');
      }
      const cursor = one(q, 'cursor');
      const page = await ctx.storage.custodyPage({
        ...(id === undefined ? {} : { id }),
        ...(source === undefined ? {} : { source }),
        ...(cursor === undefined ? {} : { cursor }),
        limit: intParam(q, 'limit', DEFAULT_PAGE, MAX_PAGE),
      });
      if (page.nextCursor !== undefined) void reply.header('X-Next-Cursor', page.nextCursor);
      reportDamage(ctx, reply, page.damaged);
      return reply.type(NDJSON).send(ndjson(page.records));
    } catch (err) {
      return sendError(reply, err);
    }
  });
}
