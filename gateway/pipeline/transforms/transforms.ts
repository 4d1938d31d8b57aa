import { createHmac } from 'node:crypto';
import { canonicalJson, sha256Hex, type AuditEvent } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';
import { deletePath, getPath, hasPath, setPath, splitPath } from './paths.js';

/** One step as configured (DESIGN §5 `pipeline.transforms`): exactly one key. */
export type TransformConfig =
  | { readonly mask: readonly string[] }
  | { readonly hash: readonly string[] }
  | { readonly rename: Readonly<Record<string, string>> }
  | { readonly drop: readonly string[] }
  | { readonly set: Readonly<Record<string, unknown>> };

/**
 * Fields the gateway and the agent own: identity, chain and provenance.
 * Changing them would break dedup, gap detection or custody, so a transform
 * naming one is a config error.
 */
const PROTECTED = new Set(['id', 'source', 'type', 'agent', 'epoch', 'seq', 'prev', 'hash', 'ingest', 'tags']);

export const MASK = '***';

type Step = (event: Record<string, unknown>) => void;

function parts(path: string, kind: string): string[] {
  const p = splitPath(path);
  if (p.some((s) => s === '')) throw GatewayErrors.METEORZX_TRANSFORM_INVALID(`${kind}: "${path}" is not a dotted field path`, { userError: true });
  if (PROTECTED.has(p[0] as string)) {
    throw GatewayErrors.METEORZX_TRANSFORM_INVALID(`${kind}: "${path}" is a field the gateway owns and cannot be changed`, { userError: true });
  }
  return p;
}

/**
 * A `hash` step's function: SHA-256 of a string's text or of any other value's canonical JSON; with a
 * key, HMAC-SHA256. Without a key a value from a small set (a user name, an IP address, a card number)
 * is found again by hashing the candidates, so the plain hash pseudonymises only against a casual reader.
 */
function hasher(key: string | undefined): (value: unknown) => string {
  const text = (value: unknown): string => (typeof value === 'string' ? value : canonicalJson(value));
  if (key === undefined) return (value) => sha256Hex(text(value));
  return (value) => createHmac('sha256', key).update(text(value)).digest('hex');
}

function compileStep(step: TransformConfig, hashKey: string | undefined): Step {
  if ('mask' in step) {
    const paths = step.mask.map((p) => parts(p, 'mask'));
    return (e) => paths.forEach((p) => hasPath(e, p) && setPath(e, p, MASK));
  }
  if ('hash' in step) {
    const paths = step.hash.map((p) => parts(p, 'hash'));
    const hashValue = hasher(hashKey);
    return (e) => paths.forEach((p) => hasPath(e, p) && setPath(e, p, hashValue(getPath(e, p))));
  }
  if ('rename' in step) {
    const moves = Object.entries(step.rename).map(([from, to]) => [parts(from, 'rename'), parts(to, 'rename')] as const);
    return (e) => {
      for (const [from, to] of moves) {
        if (!hasPath(e, from)) continue;
        const value = getPath(e, from);
        deletePath(e, from);
        // A value (not an object) in the way of `to` leaves the field where it was: moved nowhere, it would be lost.
        if (!setPath(e, to, value)) setPath(e, from, value);
      }
    };
  }
  if ('drop' in step) {
    const paths = step.drop.map((p) => parts(p, 'drop'));
    return (e) => paths.forEach((p) => deletePath(e, p));
  }
  if ('set' in step) {
    const sets = Object.entries(step.set).map(([path, value]) => [parts(path, 'set'), value] as const);
    return (e) => sets.forEach(([p, value]) => setPath(e, p, structuredClone(value)));
  }
  throw GatewayErrors.METEORZX_TRANSFORM_INVALID(`unknown transform ${JSON.stringify(step)}: use mask, hash, rename, drop or set`, {
    userError: true,
  });
}

/**
 * The transforms stage: steps compile once (paths split, protected fields
 * refused) and apply in order to a deep copy of the event, so the verdict
 * of the integrity stage — taken on the event as it arrived — is unaffected.
 */
export class Transforms {
  private readonly steps: Step[];

  /** `hashKey`: pipeline.hashKey, the key of every `hash` step's HMAC (none: plain SHA-256). */
  constructor(configs: readonly TransformConfig[], hashKey?: string) {
    this.steps = configs.map((step) => compileStep(step, hashKey));
  }

  get size(): number {
    return this.steps.length;
  }

  apply<T extends AuditEvent>(event: T): T {
    if (this.steps.length === 0) return event;
    const copy = structuredClone(event) as T & Record<string, unknown>;
    for (const step of this.steps) step(copy);
    return copy;
  }
}
