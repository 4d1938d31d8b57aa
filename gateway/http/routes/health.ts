import type { FastifyInstance } from 'fastify';
import type { ApiContext } from '../api-context.js';

/** Liveness, readiness and Prometheus metrics. */
export function registerHealth(app: FastifyInstance, ctx: ApiContext): void {
  // Alive as long as the event loop answers; says nothing about storage.
  app.get('/healthz', async () => ({ status: 'ok' }));

  // Ready once storage, pipeline and listeners are up, and no longer once draining starts.
  app.get('/readyz', async (_req, reply) => {
    const ready = ctx.isReady();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready' });
  });

  app.get('/metrics', async (_req, reply) => {
    if (ctx.metrics === undefined) return reply.type('text/plain').send('');
    const text = await ctx.metrics.metrics();
    return reply.type(ctx.metrics.contentType).send(text);
  });
}
