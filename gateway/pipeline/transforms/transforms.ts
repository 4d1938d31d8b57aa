import { createHmac } from 'node:crypto';
import { canonicalJson, sha256Hex, type AuditEvent } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';
import { deletePath, forEachPlace, getPath, hasPath, parseSegments, replaceAt, setPath, valueAt, type Segment } from './paths.js';

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

/**
 * A path's segments: dotted names, each of which may end in `[]` (every
 * item of the array there) where `items` allows it — mask, hash and drop;
 * a drop's last name may not, as removing an array's items one by one is
 * removing the array's content (drop the array, or mask it).
 */
function segments(path: string, kind: string, items: boolean): Segment[] {
  const segs = parseSegments(path);
  if (segs === undefined) {
    const hint = items ? ' (a name may end in [] for every item of an array: data.cards[].number)' : '';
    throw GatewayErrors.METEORZX_TRANSFORM_INVALID(`${kind}: "${path}" is not a dotted field path${hint}`, { userError: true });
  }
  if (PROTECTED.has((segs[0] as Segment).key)) {
    throw GatewayErrors.METEORZX_TRANSFORM_INVALID(`${kind}: "${path}" is a field the gateway owns and cannot be changed`, { userError: true });
  }
  const stepsIn = segs.some((s) => s.arrays > 0);
  if (stepsIn && !items) {
    throw GatewayErrors.METEORZX_TRANSFORM_INVALID(`${kind}: "${path}" steps into an array ([]), which only mask, hash and drop can`, { userError: true });
  }
  if (kind === 'drop' && (segs[segs.length - 1] as Segment).arrays > 0) {
    throw GatewayErrors.METEORZX_TRANSFORM_INVALID(`drop: "${path}" ends in []: drop the array itself, or a field of its items (data.cards[].cvv)`, {
      userError: true,
    });
  }
  return segs;
}

/** A path of plain names (rename, set). */
function parts(path: string, kind: string): string[] {
  return segments(path, kind, false).map((s) => s.key);
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
    const paths = step.mask.map((p) => segments(p, 'mask', true));
    return (e) => paths.forEach((p) => forEachPlace(e, p, (place) => replaceAt(place, MASK)));
  }
  if ('hash' in step) {
    const paths = step.hash.map((p) => segments(p, 'hash', true));
    const hashValue = hasher(hashKey);
    return (e) => paths.forEach((p) => forEachPlace(e, p, (place) => replaceAt(place, hashValue(valueAt(place)))));
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
    const paths = step.drop.map((p) => segments(p, 'drop', true));
    // The last name never ends in []: every place is an object's member.
    return (e) => paths.forEach((p) => forEachPlace(e, p, (place) => delete (place.holder as Record<string, unknown>)[place.key]));
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
