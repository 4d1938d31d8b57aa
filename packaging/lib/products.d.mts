// Types for the parts of products.mjs that tests import.
export interface Product {
  name: string;
  bundle: 'agent' | 'gateway';
  bundleFile: string;
  bin: string;
  command: string;
  config: string;
  dataDir: string;
  summary: string;
  nodeFlags: readonly string[];
  preloadAllocator: boolean;
}
export const ROOT: string;
export const PACKAGING: string;
export const GATEWAY_NODE_FLAGS: readonly string[];
export const PRODUCTS: Record<'agent' | 'gateway', Product>;
export function templateValues(product: Product, version: string, arch?: string): Record<string, string>;
export function fillTemplate(text: string, values: Record<string, string>): string;
export const GATEWAY_ALLOCATOR: string;
export function multiarchTriplet(machine: string): string;
export function gatewayEnv(env?: NodeJS.ProcessEnv, exists?: (path: string) => boolean): NodeJS.ProcessEnv;
export function allocatorPath(arch: string): string;
