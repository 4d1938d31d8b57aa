#!/usr/bin/env node
// Dedup memory (DESIGN §7: "a 10M-id window must not hold 10M ids in RAM").
// Ingests N distinct ids straight through the gateway pipeline (validate →
// integrity → dedup → synced LevelDB commit) in-process — the HTTP path adds
// parsing cost, not dedup memory, and would not fit 10M ids in the suite's
// time — with the dedup window, cache size and commit size the gateway config
// defaults to, with the node flags and allocator the gateway's launcher
// uses, and records memory at every 10% of the ids, at rest (producers
// paused, commits settled, GC run). Bounded means the curve flattens: bytes
// of RSS per id between 50% and 100% of the window is the figure (an id held
// in a JS Set or LRU costs ≥ 50 B), with the JS heap's and native memory's
// shares beside it.
// Needs `npm run build` first.
//
//   node bench/dedup-memory.mjs [--ids 10000000] [--batch 1000] [--producers 8]
import { spawn } from 'node:child_process';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { ROOT } from './lib/processes.mjs';
import { slope } from './lib/stats.mjs';
import { emitResult } from './lib/emit.mjs';
import { GATEWAY_NODE_FLAGS, gatewayEnv } from '../packaging/lib/products.mjs';

const { values: args } = parseArgs({
  options: {
    ids: { type: 'string', default: '10000000' },
    batch: { type: 'string', default: '1000' },
    producers: { type: 'string', default: '8' },
    'commit-events': { type: 'string', default: '1000' }, // the gateway's commit.maxEvents default
    child: { type: 'boolean', default: false },
  },
});

// global.gc before each sample keeps garbage out of the curve; re-run self with it.
if (!args.child) {
  const code = await new Promise((resolve, reject) => {
    // The gateway's node flags and allocator, as its launcher sets them (packaging/lib/products.mjs).
    const p = spawn(process.execPath, [...GATEWAY_NODE_FLAGS, '--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2), '--child'], { stdio: 'inherit', env: gatewayEnv() });
    p.once('error', reject);
    p.once('exit', (c, s) => resolve(c ?? s));
  });
  process.exit(code === 0 ? 0 : 1);
}

const total = Number(args.ids);
const batch = Number(args.batch);
const producers = Number(args.producers);
const MB = 1024 * 1024;

/** VmRSS and its parts (MB): RssAnon is private memory; RssFile counts pages of mapped files (LevelDB maps its tables). */
async function rss() {
  const status = await readFile('/proc/self/status', 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN) / 1024;
  return { rssMB: kb('VmRSS'), rssAnonMB: kb('RssAnon'), rssFileMB: kb('RssFile') };
}

const dir = await mkdtemp(join(tmpdir(), 'meteorzx-bench-dedup-'));
try {
  const { LevelStorage } = await import(join(ROOT, 'dist/gateway/storage/level/index.js'));
  const { createPipeline } = await import(join(ROOT, 'dist/gateway/pipeline/index.js'));
  const storage = new LevelStorage({ dataDir: dir });
  await storage.open();
  const windowMs = 7 * 86_400_000;
  const cacheSize = 100_000;
  const p = createPipeline({
    storage,
    gatewayName: 'bench',
    config: { pipeline: { dedup: { window: windowMs, cacheSize }, transforms: [], rules: [] }, commit: { maxEvents: Number(args['commit-events']), maxWaitMs: 5 } },
    maxQueuedEvents: 1_000_000,
  });
  await p.start();
  // heap = JS objects (the dedup cache lives there); heapTotal = what V8 has committed for them; native =
  // private memory outside V8's heap (LevelDB, zlib, the allocator's own free lists); leveldb = its memtables and block cache.
  const sample = async (ids) => {
    const m = process.memoryUsage();
    const r = await rss();
    const leveldb = Number(storage.db?.getProperty?.('leveldb.approximate-memory-usage') ?? NaN) / MB;
    return { ids, ...r, heapMB: m.heapUsed / MB, heapTotalMB: m.heapTotal / MB, nativeMB: r.rssAnonMB - m.heapTotal / MB, leveldbMB: leveldb, externalMB: m.external / MB, arrayBuffersMB: m.arrayBuffers / MB };
  };
  // Memory is sampled at rest: after each tenth of the ids the producers stop, every commit has settled,
  // and two full GCs run — so a point shows what the gateway holds at that window size, not a commit in flight.
  const settle = async () => {
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 1500));
    globalThis.gc();
  };
  await settle();
  const points = [await sample(0)];
  const step = Math.ceil(total / 10);
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let pausedMs = 0;
  for (let end = step; next < total; end = Math.min(total, end + step)) {
    await Promise.all(
      Array.from({ length: producers }, async (_, k) => {
        while (next < end) {
          const base = next;
          const n = Math.min(batch, end - base);
          next += n;
          const items = [];
          for (let i = base; i < base + n; i += 1) {
            // Small distinct events: the id is what dedup keeps, the rest is kept minimal so 10M fit the time budget.
            items.push({ index: i - base, value: { id: `dedup-${i.toString(36).padStart(8, '0')}`, source: `dev-${i % 1000}`, type: 'bench.dedup' }, bytes: 80 });
          }
          const r = await p.ingest(items, { method: 'http', peer: `bench-${k}` });
          if (r.accepted !== n) throw new Error(`batch at ${base}: accepted ${r.accepted} of ${n}`);
        }
      }),
    );
    const paused = performance.now();
    await settle();
    points.push(await sample(end));
    pausedMs += performance.now() - paused;
  }
  const seconds = (performance.now() - t0 - pausedMs) / 1000;
  const cpu = process.cpuUsage(cpu0);
  // A repeat of the first id must still be caught by the on-disk index (it left the cache long ago).
  const repeat = await p.ingest([{ index: 0, value: { id: `dedup-${(0).toString(36).padStart(8, '0')}`, source: 'dev-0', type: 'bench.dedup' }, bytes: 80 }], { method: 'http', peer: 'bench-repeat' });
  await p.close();
  await storage.close();
  const at = (frac) => points.reduce((best, pt) => (Math.abs(pt.ids - frac * total) < Math.abs(best.ids - frac * total) ? pt : best));
  const secondHalf = (field) => points.filter((pt) => pt.ids >= total / 2).map((pt) => ({ x: pt.ids, y: pt[field] * MB }));
  const result = {
    ids: total,
    seconds,
    idsPerSecond: total / seconds,
    cpuMicrosPerId: (cpu.user + cpu.system) / total,
    windowMs,
    cacheSize,
    points,
    rssAt10MB: at(0.1).rssMB,
    rssAt50MB: at(0.5).rssMB,
    rssAt100MB: at(1).rssMB,
    bytesPerIdSecondHalf: slope(secondHalf('rssMB')),
    // Where growth would show if ids were held in memory: JS objects, or native memory outside V8's heap.
    heapBytesPerIdSecondHalf: slope(secondHalf('heapMB')),
    nativeBytesPerIdSecondHalf: slope(secondHalf('nativeMB')),
    allocator: /jemalloc/.test(process.env.LD_PRELOAD ?? '') ? 'jemalloc' : 'glibc malloc',
    oldestIdStillDeduplicated: repeat.duplicates === 1,
  };
  console.log(`dedup memory: ${total} ids in ${seconds.toFixed(1)} s (${Math.round(result.idsPerSecond)} ids/s); RSS ${result.rssAt10MB.toFixed(1)} MB at 10%, ${result.rssAt50MB.toFixed(1)} MB at 50%, ${result.rssAt100MB.toFixed(1)} MB at 100%; ${result.bytesPerIdSecondHalf.toFixed(2)} B/id of RSS over the second half (JS heap ${result.heapBytesPerIdSecondHalf.toFixed(2)}, native ${result.nativeBytesPerIdSecondHalf.toFixed(2)}; ${result.allocator}); oldest id deduplicated: ${result.oldestIdStillDeduplicated}`);
  if (!result.oldestIdStillDeduplicated) throw new Error('the first id was not found as a duplicate at the end: the window is not kept');
  await emitResult('dedup-memory', result);
} finally {
  await rm(dir, { recursive: true, force: true });
}
