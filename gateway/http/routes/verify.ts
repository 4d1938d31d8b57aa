import type { FastifyInstance } from 'fastify';
import { SOURCE_RE } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';
import { ANCHOR_FORM, parseAnchor } from '../../storage/ledger.js';
import type { VerifyOptions } from '../../storage/types.js';
import type { ApiContext } from '../api-context.js';
import { sendError } from '../reply-error.js';
import { one, onlyParams, type QueryString } from './query-params.js';

/**
 * POST /v1/verify[?source=S][&anchor=N:HASH] (admin scope): recomputes the custody ledger
 * chain and every stored event's hash, answering the VerifyReport; what
 * `meteorzx verify GATEWAY_URL` calls. A POST, because it reads the whole
 * store: no crawler or prefetcher should trigger it.
 */
export function registerVerify(app: FastifyInstance, ctx: ApiContext): void {
  let running: Promise<unknown> | undefined;
  app.post('/v1/verify', async (req, reply) => {
    try {
      onlyParams(req.query as QueryString, ['source', 'anchor']);
      const source = one(req.query as QueryString, 'source');
      // A source no event can have would verify nothing and answer ok.
      if (source !== undefined && !SOURCE_RE.test(source)) throw GatewayErrors.METEORZX_BAD_REQUEST(`source must match ${String(SOURCE_RE)}`);
      const anchorText = one(req.query as QueryString, 'anchor');
      const anchor = anchorText === undefined ? undefined : parseAnchor(anchorText);
      if (anchorText !== undefined && anchor === undefined) throw GatewayErrors.METEORZX_BAD_REQUEST(`anchor: expected ${ANCHOR_FORM}`);
      const opts: VerifyOptions = { ...(source === undefined ? {} : { source }), ...(anchor === undefined ? {} : { anchor }) };
      // One verify at a time: a second caller waits for the first instead of doubling the disk read.
      while (running) await running.catch(() => undefined);
      const work = ctx.storage.verify(opts);
      running = work;
      try {
        return reply.send(await work);
      } finally {
        running = undefined;
      }
    } catch (err) {
      return sendError(reply, err);
    }
  });
}
