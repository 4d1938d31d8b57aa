import {
  deterministicId,
  formatIssues,
  isWellFormed,
  SOURCE_RE,
  validateEvent,
  withFields,
  type BatchItem,
  type Limits,
} from '../../../protocols/index.js';
import type { IngestContext } from '../ingestor.js';
import type { PipelineItem } from '../item.js';

/**
 * The validate stage: envelope and limits (DESIGN §2), then the fields the
 * gateway settles — `source` from the ingress default (the MQTT topic's),
 * `time` defaulting to receipt, and a deterministic id for an event that has
 * none, computed on the payload as it arrived so that a device's retry of
 * the same payload gets the same id and dedups. An event naming a source
 * this peer may not use is rejected with the reason (relayFor, DESIGN §5),
 * and so is a chain record (`agent`, `epoch`, `seq`…) naming an agent it
 * may not use. The input value is never modified.
 */
export function validateItem(item: BatchItem, ctx: IngestContext, limits: Limits, receivedAt: string): PipelineItem {
  if (item.error !== undefined) {
    // An event refused unparsed for its size: its id, source and chain position, read from its bytes (item-head.ts).
    if (item.head !== undefined) return rejected(item.index, item.head, ctx, item.error, undefined, 'decode');
    // Nothing of the payload is readable, but the ingress's source is known (the MQTT topic's): keep it for custody search.
    const source = ctx.defaultSource === undefined ? {} : { source: ctx.defaultSource };
    return { index: item.index, ...source, rejected: { stage: 'decode', reason: item.error } };
  }
  const value = item.value;
  const result = validateEvent(value, limits, item.bytes);
  if (!result.ok) return rejected(item.index, value, ctx, formatIssues(result.errors));
  const input = result.event;
  const source = input.source ?? ctx.defaultSource;
  if (source === undefined) return rejected(item.index, value, ctx, 'source: required (this ingress gives no default source)');
  if (ctx.mayUseSource !== undefined && !ctx.mayUseSource(source)) {
    return rejected(item.index, value, ctx, `source: this client may not send events for "${source}"`, source);
  }
  // A chain record names its agent: one client must not write another agent's chain (fill or fake its holes).
  if (ctx.mayUseSource !== undefined && input.agent !== undefined && !ctx.mayUseSource(input.agent)) {
    return rejected(item.index, value, ctx, `agent: this client may not send chain records of "${input.agent}"`, source);
  }
  const id = input.id ?? deterministicId(source, value);
  // An event that brings id, source and time (an agent's always does) is used as it is: no copy.
  const complete = input.id !== undefined && input.source !== undefined && input.time !== undefined;
  const event = complete ? (input as PipelineItem['event'] & object) : withFields(input, { id, source, time: input.time ?? receivedAt });
  // The text is what the agent's hash covers only while the event is the one parsed from it.
  const text = complete && input.hash !== undefined ? item.text : undefined;
  return { index: item.index, id, source, arrived: input, event, text, line: undefined };
}

/** A validation rejection, with what custody (id, source) and the seq registry (chain) can read of the event. */
function rejected(index: number, value: unknown, ctx: IngestContext, reason: string, source?: string, stage: 'decode' | 'validate' = 'validate'): PipelineItem {
  const chain = readableChain(value, ctx);
  return {
    index,
    ...readableIdentity(value, ctx),
    ...(source === undefined ? {} : { source }),
    ...(chain === undefined ? {} : { chain }),
    rejected: { stage, reason },
  };
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The agent, epoch and seq of an invalid event where they are well-formed
 * and this client may write that agent's chain (as for a valid event): the
 * seq arrived, rejected or not. An agent's event the gateway rejects (an
 * unknown field from a newer agent, nesting past the gateway's maxDepth) was
 * otherwise a hole that backfill pulled again, to be rejected again, at
 * every scan.
 */
function readableChain(value: unknown, ctx: IngestContext): PipelineItem['chain'] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const { agent, epoch, seq, hash, prev } = value as Record<string, unknown>;
  if (typeof agent !== 'string' || !SOURCE_RE.test(agent) || typeof epoch !== 'string' || !SOURCE_RE.test(epoch)) return undefined;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return undefined;
  if (ctx.mayUseSource !== undefined && !ctx.mayUseSource(agent)) return undefined;
  return {
    agent,
    epoch,
    seq,
    ...(typeof hash === 'string' && HEX64.test(hash) ? { hash } : {}),
    ...(typeof prev === 'string' && HEX64.test(prev) ? { prev } : {}),
  };
}

/** Id and source of an invalid event where they are well-formed, so custody can be searched by them. */
function readableIdentity(value: unknown, ctx: IngestContext): { id?: string; source?: string } {
  const out: { id?: string; source?: string } = {};
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const v = value as Record<string, unknown>;
    // A lone surrogate cannot go into the ledger's canonical JSON (nor be asked for in a URL).
    if (typeof v.id === 'string' && v.id.length > 0 && v.id.length <= 128 && isWellFormed(v.id)) out.id = v.id;
    if (typeof v.source === 'string' && SOURCE_RE.test(v.source)) out.source = v.source;
  }
  if (out.source === undefined && ctx.defaultSource !== undefined) out.source = ctx.defaultSource;
  return out;
}
