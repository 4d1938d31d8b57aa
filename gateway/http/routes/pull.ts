import type { FastifyInstance } from 'fastify';
import { caPemProblem } from '../../../common/tls-trust.js';
import { isSeq, type PullRequest } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';
import type { ApiContext } from '../api-context.js';
import { sendError } from '../reply-error.js';

/** What an HTTP header value may hold (undici refuses the request otherwise): tab, printable ASCII, Latin-1. */
const HEADER_VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Validates `POST /v1/pull`'s body: `{url, after?, until?, token?, ca?}`. */
export function parsePullRequest(body: unknown): PullRequest {
  let value = body;
  if (Buffer.isBuffer(body)) {
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch {
      throw GatewayErrors.METEORZX_BAD_REQUEST('body must be JSON: {"url": "http://agent:7402", "after"?: n, "until"?: n, "token"?: "...", "ca"?: "-----BEGIN CERTIFICATE-----..."}');
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw GatewayErrors.METEORZX_BAD_REQUEST('body must be a JSON object');
  const v = value as Record<string, unknown>;
  if (typeof v.url !== 'string' || !/^https?:\/\/./.test(v.url)) throw GatewayErrors.METEORZX_BAD_REQUEST('url must be the http(s) URL of an agent pull listener');
  // Caught here, a typo is the caller's 400, not a 502 blaming an agent that was never asked.
  if (!URL.canParse(v.url)) throw GatewayErrors.METEORZX_BAD_REQUEST(`url "${v.url.slice(0, 200)}" is not a valid URL`);
  if (v.after !== undefined && !isSeq(v.after)) throw GatewayErrors.METEORZX_BAD_REQUEST('after must be an integer ≥ 0');
  if (v.until !== undefined && (!isSeq(v.until) || v.until <= ((v.after as number | undefined) ?? 0))) {
    throw GatewayErrors.METEORZX_BAD_REQUEST('until must be an integer > after');
  }
  if (v.token !== undefined && typeof v.token !== 'string') throw GatewayErrors.METEORZX_BAD_REQUEST('token must be a string');
  if (typeof v.token === 'string' && !HEADER_VALUE_RE.test(v.token)) {
    throw GatewayErrors.METEORZX_BAD_REQUEST('token must be text an HTTP header can carry: no control characters, nothing beyond U+00FF');
  }
  if (v.ca !== undefined) {
    if (typeof v.ca !== 'string') throw GatewayErrors.METEORZX_BAD_REQUEST('ca must be a string: the PEM text of the CA certificates that sign the agent certificate');
    if (!v.url.startsWith('https://')) throw GatewayErrors.METEORZX_BAD_REQUEST('ca is for an https url only; this url is http');
    const problem = caPemProblem(v.ca);
    if (problem !== undefined) throw GatewayErrors.METEORZX_BAD_REQUEST(`ca ${problem}`);
  }
  return {
    url: v.url,
    ...(v.after === undefined ? {} : { after: v.after as number }),
    ...(v.until === undefined ? {} : { until: v.until as number }),
    ...(v.token === undefined ? {} : { token: v.token as string }),
    ...(v.ca === undefined ? {} : { ca: v.ca }),
  };
}

/**
 * POST /v1/pull (admin scope, DESIGN §5): the gateway pulls from an agent
 * itself, so the events' provenance says `pull`. Answers when the pull is
 * stored, with what it did.
 */
export function registerPull(app: FastifyInstance, ctx: ApiContext): void {
  app.post('/v1/pull', async (req, reply) => {
    try {
      if (ctx.pulls === undefined) throw GatewayErrors.METEORZX_NOT_FOUND('pulling is not enabled on this gateway');
      const result = await ctx.pulls.pull(parsePullRequest(req.body));
      return reply.code(200).send(result);
    } catch (err) {
      return sendError(reply, err);
    }
  });
}
