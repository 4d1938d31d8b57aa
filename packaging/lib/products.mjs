// What gets packaged, in one place: the two products, the target
// architectures and the Node.js runtime they ship with.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PACKAGING = join(ROOT, 'packaging');

/** package.json's version, the default version of every artefact. */
export const PACKAGE_VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;

/**
 * Packages with compiled (.node) parts. They stay out of the bundle: their JS
 * finds its binary by path (node-gyp-build) and so has to sit in a real
 * node_modules folder, shipped with the prebuilds of one platform only.
 */
export const NATIVE_PACKAGES = ['classic-level', '@serialport/bindings-cpp'];

/**
 * The Node.js runtime inside the tarballs, from the npm registry's
 * node-linux-<arch> packages. 22.x is a maintained LTS line (security fixes
 * until April 2027); the bundles target node20, so any later line works too.
 * METEORZX_NODE_VERSION overrides it (e.g. a 24.x release).
 */
export const NODE_VERSION = process.env.METEORZX_NODE_VERSION || '22.23.3';

/** Our architecture names (Node's) → Debian's. */
export const ARCHES = { x64: { deb: 'amd64' }, arm64: { deb: 'arm64' } };

/**
 * @typedef {object} Product
 * @property {string} name        package / tarball / unit name
 * @property {'agent' | 'gateway'} bundle   which bundle (packaging/bundle.mjs)
 * @property {string} bundleFile  the bundle's file name
 * @property {string} bin         the launcher in bin/
 * @property {string} command     the subcommand the service runs
 * @property {string} config      default config, under packaging/etc/, installed as /etc/meteorzx/<config>
 * @property {string} dataDir     the service's data directory (systemd StateDirectory)
 * @property {string} summary     one line for the .deb and the docs
 * @property {readonly string[]} nodeFlags  V8/Node flags the launcher passes (they must be set before the heap exists)
 * @property {boolean} preloadAllocator  the launcher preloads GATEWAY_ALLOCATOR when the host has it
 */

/**
 * The gateway allocates a few short-lived objects per event (parsed
 * payload, stored event, custody record) at tens of thousands of events a
 * second. With V8's default 16 MB semi-spaces the scavenger runs so often
 * that GC took 15% of the gateway's CPU under 1,000 MQTT devices; 64 MB
 * semi-spaces brought it to ≈6% and raised the acked rate ≈15%
 * (bench/gateway-mqtt.mjs, docs/performance.md). Heap-size flags are read
 * once when the heap is set up, so they go on node's command line: the
 * launcher, `npm start` and the benches all pass these.
 */
export const GATEWAY_NODE_FLAGS = Object.freeze(['--max-semi-space-size=64']);

/**
 * The gateway's memory allocator. Under glibc malloc the gateway's RSS
 * creeps up with the events it stores (≈30 B per event at 10M events)
 * while the memory it has allocated stays flat (heaptrack: 23–25 MB of
 * malloc in use throughout): LevelDB's table and compaction buffers, zlib
 * streams and Buffers are freed between allocations that stay, and glibc
 * keeps the holes. jemalloc returns them (bench/dedup-memory.mjs,
 * docs/performance.md). The launcher preloads it when the host has it
 * (Debian: libjemalloc2, which the .deb recommends) unless
 * METEORZX_SYSTEM_MALLOC is set; without it the gateway runs on glibc.
 */
export const GATEWAY_ALLOCATOR = 'libjemalloc.so.2';

/** Debian's multiarch directory for an architecture: Node's name (x64, arm64) or the machine's (x86_64, aarch64). */
export function multiarchTriplet(machine) {
  return `${{ x64: 'x86_64', arm64: 'aarch64' }[machine] ?? machine}-linux-gnu`;
}

/** Where Debian puts GATEWAY_ALLOCATOR for an architecture. */
export function allocatorPath(arch) {
  return `/usr/lib/${multiarchTriplet(arch)}/${GATEWAY_ALLOCATOR}`;
}

/**
 * The environment the gateway runs with, as the launcher builds it:
 * jemalloc preloaded when present (see GATEWAY_ALLOCATOR). Benches use it so
 * they measure what ships.
 */
export function gatewayEnv(env = process.env, exists = existsSync) {
  const lib = allocatorPath(process.arch);
  if (env.METEORZX_SYSTEM_MALLOC || !exists(lib)) return { ...env };
  return { ...env, LD_PRELOAD: env.LD_PRELOAD ? `${lib}:${env.LD_PRELOAD}` : lib };
}

/** @type {Record<'agent' | 'gateway', Product>} */
export const PRODUCTS = {
  agent: {
    name: 'meteorzx-agent',
    bundle: 'agent',
    bundleFile: 'meteorzx-agent.mjs',
    bin: 'meteorzx-agent',
    command: 'agent',
    config: 'agent.yaml',
    dataDir: '/var/lib/meteorzx/agent',
    summary: 'MeteorZX audit-event agent: local intake, durable buffer, push to the gateway',
    // The agent keeps V8's young generation small; `meteorzx agent` sets that on itself (agent/v8-flags.ts),
    // as the flag has no effect on node's command line. RSS matters more on an edge box.
    nodeFlags: [],
    preloadAllocator: false,
  },
  gateway: {
    name: 'meteorzx-gateway',
    bundle: 'gateway',
    bundleFile: 'meteorzx.mjs',
    bin: 'meteorzx',
    command: 'gateway',
    config: 'gateway.yaml',
    dataDir: '/var/lib/meteorzx/gateway',
    summary: 'MeteorZX gateway: MQTT and HTTP ingest, validation, dedup, storage and custody ledger',
    nodeFlags: GATEWAY_NODE_FLAGS,
    preloadAllocator: true,
  },
};

/** Where a product is installed, by the tarball's install.sh and by the .deb alike. */
export function installPrefix(product) {
  return `/opt/${product.name}`;
}

/** The strings the templates under packaging/ use (@NAME@ …). */
export function templateValues(product, version, arch = process.arch) {
  return {
    NAME: product.name,
    BIN: product.bin,
    BUNDLE: product.bundleFile,
    COMMAND: product.command,
    CONFIG: product.config,
    DATA_DIR: product.dataDir,
    PREFIX: installPrefix(product),
    VERSION: version,
    SUMMARY: product.summary,
    NODE_FLAGS: product.nodeFlags.join(' '),
    // The tarball is built for one architecture, so the allocator's path is known here (no uname at run time).
    ALLOCATOR_PATH: product.preloadAllocator ? allocatorPath(arch) : '',
  };
}

/** Replaces every @KEY@ in text; a placeholder without a value is a packaging bug, so it throws. */
export function fillTemplate(text, values) {
  return text.replace(/@([A-Z_]+)@/g, (whole, key) => {
    if (!(key in values)) throw new Error(`template placeholder ${whole} has no value`);
    return values[key];
  });
}
