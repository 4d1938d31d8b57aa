import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Scope } from '../auth/tokens.js';
import { GatewayErrors } from '../errors.js';
import type { ApiContext } from './api-context.js';
import { sendError } from './reply-error.js';

// Probes stay open so load balancers and orchestrators need no token.
const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

/** The scope a request needs: POST /v1/events is ingest, other writes admin, reads query. */
/**
 * The route a request was matched to (`/v1/%65vents` is `/v1/events`), or
 * its raw path when none matched. Hooks that judge a request by its path
 * must use this: the router decodes the path, a string compare does not.
 */
export function routeOf(req: FastifyRequest): string {
  return req.routeOptions.url ?? req.url.split('?')[0] ?? '';
}

export function scopeFor(req: FastifyRequest): Scope | undefined {
  const path = routeOf(req);
  if (OPEN_PATHS.has(path)) return undefined;
  if (req.method === 'GET' || req.method === 'HEAD') return 'query';
  if (req.method === 'POST' && path === '/v1/events') return 'ingest';
  return 'admin';
}

// Which token a request was authenticated with; its name is the default source of the events it posts.
const identities = new WeakMap<FastifyRequest, string>();

/** The name of the token the request was authenticated with; undefined when auth is off. */
export function identityOf(req: FastifyRequest): string | undefined {
  return identities.get(req);
}

/** Checks the bearer token before the body is read, so an unauthenticated upload costs nothing. */
export function registerAuth(app: FastifyInstance, ctx: ApiContext): void {
  app.addHook('onRequest', async (req, reply) => {
    const scope = scopeFor(req);
    if (scope === undefined) return;
    const check = ctx.tokens.check(req.headers.authorization, scope);
    if (check.ok) {
      if (check.name !== 'anonymous') identities.set(req, check.name);
      return;
    }
    const err = check.status === 401 ? GatewayErrors.METEORZX_UNAUTHORIZED(check.reason) : GatewayErrors.METEORZX_FORBIDDEN(check.reason);
    if (check.status === 401) void reply.header('WWW-Authenticate', 'Bearer');
    return sendError(reply, err);
  });
}
