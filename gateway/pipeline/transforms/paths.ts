/**
 * Dotted paths into an event (`data.user.name`). Only plain objects are
 * walked, except after a name ending in `[]` (`data.cards[].number`, for
 * the steps that take such paths): a path through an array or a scalar
 * otherwise finds nothing. Only an
 * object's own members count: `data.__proto__.x` or `data.toString` name a
 * member the event may carry (JSON.parse keeps `"__proto__"` as a key),
 * never Object.prototype, which a step would otherwise change for the whole
 * process.
 */
type Obj = Record<string, unknown>;

/** One name of a path and how many arrays to step into after it: `cards[]` → 1, `grid[][]` → 2. */
export interface Segment {
  readonly key: string;
  readonly arrays: number;
}

const SEGMENT = /^([^[\]]+)((?:\[\])*)$/;

/** The segments of a path, or undefined when a name is empty or has a bracket other than trailing `[]`s. */
export function parseSegments(path: string): Segment[] | undefined {
  const out: Segment[] = [];
  for (const part of path.split('.')) {
    const m = SEGMENT.exec(part);
    if (m === null) return undefined;
    out.push({ key: m[1] as string, arrays: (m[2] as string).length / 2 });
  }
  return out;
}

/** Where a path ends: a member of an object, or an item of an array. */
export type Place = { readonly holder: Obj; readonly key: string } | { readonly holder: unknown[]; readonly key: number };

/**
 * Calls `at` for every place the path names that holds a value: own
 * members of objects and, after a `[]`, every item of the array there. An
 * item that is not an object ends the walk of a path that goes on past it,
 * and a value that is not an array where `[]` asks for one finds nothing,
 * as a scalar in the way of a plain path does. An event is at most
 * `limits.maxEventBytes`, so the places are as many as its values at most.
 */
export function forEachPlace(root: Obj, segments: readonly Segment[], at: (place: Place) => void): void {
  const walk = (node: Obj, i: number): void => {
    const seg = segments[i] as Segment;
    if (!Object.hasOwn(node, seg.key)) return;
    const last = i === segments.length - 1;
    const reached = (place: Place): void => {
      if (last) return at(place);
      const value = valueAt(place);
      if (isObject(value)) walk(value, i + 1);
    };
    items({ holder: node, key: seg.key }, seg.arrays, reached);
  };
  if (segments.length > 0) walk(root, 0);
}

function items(place: Place, arrays: number, reached: (place: Place) => void): void {
  if (arrays === 0) return reached(place);
  const value = valueAt(place);
  if (!Array.isArray(value)) return;
  for (let j = 0; j < value.length; j += 1) items({ holder: value as unknown[], key: j }, arrays - 1, reached);
}

export function valueAt(place: Place): unknown {
  return Array.isArray(place.holder) ? place.holder[place.key as number] : own(place.holder, place.key as string);
}

export function replaceAt(place: Place, value: unknown): void {
  if (Array.isArray(place.holder)) place.holder[place.key as number] = value;
  else put(place.holder, place.key as string, value);
}

function isObject(value: unknown): value is Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}


function own(node: Obj, key: string): unknown {
  return Object.hasOwn(node, key) ? node[key] : undefined;
}

/** `node[key] = value` as an own member, also for `__proto__` (an assignment would set the prototype). */
function put(node: Obj, key: string, value: unknown): void {
  Object.defineProperty(node, key, { value, writable: true, enumerable: true, configurable: true });
}

function parentOf(root: Obj, parts: readonly string[], create: boolean): Obj | undefined {
  let node: Obj = root;
  for (const part of parts.slice(0, -1)) {
    const next = own(node, part);
    if (isObject(next)) node = next;
    else if (create && !Object.hasOwn(node, part)) {
      const made: Obj = {};
      put(node, part, made);
      node = made;
    } else return undefined;
  }
  return node;
}

export function hasPath(root: Obj, parts: readonly string[]): boolean {
  const parent = parentOf(root, parts, false);
  return parent !== undefined && Object.hasOwn(parent, parts[parts.length - 1] as string);
}

export function getPath(root: Obj, parts: readonly string[]): unknown {
  const parent = parentOf(root, parts, false);
  return parent === undefined ? undefined : own(parent, parts[parts.length - 1] as string);
}

/** Sets the value, creating missing objects on the way; false when a scalar is in the way. */
export function setPath(root: Obj, parts: readonly string[], value: unknown): boolean {
  const parent = parentOf(root, parts, true);
  if (parent === undefined) return false;
  put(parent, parts[parts.length - 1] as string, value);
  return true;
}

export function deletePath(root: Obj, parts: readonly string[]): boolean {
  const parent = parentOf(root, parts, false);
  const last = parts[parts.length - 1] as string;
  if (parent === undefined || !Object.hasOwn(parent, last)) return false;
  delete parent[last];
  return true;
}
