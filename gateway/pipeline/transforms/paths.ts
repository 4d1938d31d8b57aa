/**
 * Dotted paths into an event (`data.user.name`). Only plain objects are
 * walked: a path through an array or a scalar finds nothing.
 */
type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function splitPath(path: string): string[] {
  return path.split('.');
}

function parentOf(root: Obj, parts: readonly string[], create: boolean): Obj | undefined {
  let node: Obj = root;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (isObject(next)) node = next;
    else if (create && next === undefined) {
      const made: Obj = {};
      node[part] = made;
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
  return parentOf(root, parts, false)?.[parts[parts.length - 1] as string];
}

/** Sets the value, creating missing objects on the way; false when a scalar is in the way. */
export function setPath(root: Obj, parts: readonly string[], value: unknown): boolean {
  const parent = parentOf(root, parts, true);
  if (parent === undefined) return false;
  parent[parts[parts.length - 1] as string] = value;
  return true;
}

export function deletePath(root: Obj, parts: readonly string[]): boolean {
  const parent = parentOf(root, parts, false);
  const last = parts[parts.length - 1] as string;
  if (parent === undefined || !Object.hasOwn(parent, last)) return false;
  delete parent[last];
  return true;
}
