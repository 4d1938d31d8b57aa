/**
 * Dotted paths into an event (`data.user.name`). Only plain objects are
 * walked: a path through an array or a scalar finds nothing. Only an
 * object's own members count: `data.__proto__.x` or `data.toString` name a
 * member the event may carry (JSON.parse keeps `"__proto__"` as a key),
 * never Object.prototype, which a step would otherwise change for the whole
 * process.
 */
type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function splitPath(path: string): string[] {
  return path.split('.');
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
