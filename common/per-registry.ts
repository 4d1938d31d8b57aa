import type { Registry } from 'prom-client';

/** What perRegistry gives: the metrics of a registry (made at the first call), and those already made. */
export interface PerRegistry<T> {
  (registry: Registry): T;
  /** The metrics made for `registry`, without making them. */
  existing(registry: Registry): T | undefined;
}

/**
 * `make(registers)` once per registry, then the same result: for metrics of
 * objects that are made again while the process runs (an intake a reload
 * restarts in place), since prom-client refuses a second metric of one name
 * in a registry.
 */
export function perRegistry<T>(make: (registers: Registry[]) => T): PerRegistry<T> {
  const made = new WeakMap<Registry, T>();
  const of = (registry: Registry): T => {
    let found = made.get(registry);
    if (found === undefined) {
      found = make([registry]);
      made.set(registry, found);
    }
    return found;
  };
  return Object.assign(of, { existing: (registry: Registry) => made.get(registry) });
}
