#!/usr/bin/env node
// Dedup memory (DESIGN §7: "a 10M-id window must not hold 10M ids in RAM").
// Ingests N distinct ids straight through the gateway pipeline (validate →
// integrity → dedup → synced LevelDB commit) in-process — the HTTP path adds
// parsing cost, not dedup memory, and would not fit 10M ids in the suite's
// time — with the dedup window, cache size and commit size the gateway config
// defaults to, and records RSS at every 10% of the ids. Bounded means the
// curve flattens: bytes of RSS per id between 50% and 100% of the window is
// the figure (an id held in a JS Set or LRU costs ≥ 50 B).
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
    const p = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2), '--child'], { stdio: 'inherit' });
    p.once('error', reject);
    p.once('exit', (c, s) => resolve(c ?? s));
  });
  process.exit(code === 0 ? 0 : 1);
}

const total = Number(args.ids);
const batch = Number(args.batch);
const producers = Number(args.producers);
const MB = 1024 * 1024;

async function rssMB() {
  const m = /^VmRSS:\s+(\d+)/m.exec(await readFile('/proc/self/status', 'utf8'));
  return Number(m[1]) / 1024;
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
  globalThis.gc();
  // heap = JS objects (the dedup LRU lives there); external/arrayBuffers = Buffers; the rest of RSS is native (LevelDB, zlib).
  const sample = async (ids) => {
    const m = process.memoryUsage();
    return { ids, rssMB: await rssMB(), heapMB: m.heapUsed / MB, externalMB: m.external / MB, arrayBuffersMB: m.arrayBuffers / MB };
  };
  const points = [await sample(0)];
  const step = Math.ceil(total / 10);
  let next = 0;
  let done = 0;
  let nextMark = step;
  let marking = Promise.resolve();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: producers }, async (_, k) => {
      while (next < total) {
        const base = next;
        const n = Math.min(batch, total - base);
        next += n;
        const items = [];
        for (let i = base; i < base + n; i += 1) {
          // Small distinct events: the id is what dedup keeps, the rest is kept minimal so 10M fit the time budget.
          items.push({ index: i - base, value: { id: `dedup-${i.toString(36).padStart(8, '0')}`, source: `dev-${i % 1000}`, type: 'bench.dedup' }, bytes: 80 });
        }
        const r = await p.ingest(items, { method: 'http', peer: `bench-${k}` });
        if (r.accepted !== n) throw new Error(`batch at ${base}: accepted ${r.accepted} of ${n}`);
        done += n;
        if (done >= nextMark) {
          const at = nextMark;
          nextMark += step;
          marking = marking.then(async () => {
            globalThis.gc();
            points.push(await sample(at));
          });
        }
      }
    }),
  );
  await marking;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  // A repeat of the first id must still be caught by the on-disk index (it left the cache long ago).
  const repeat = await p.ingest([{ index: 0, value: { id: `dedup-${(0).toString(36).padStart(8, '0')}`, source: 'dev-0', type: 'bench.dedup' }, bytes: 80 }], { method: 'http', peer: 'bench-repeat' });
  await p.close();
  await storage.close();
  const at = (frac) => points.reduce((best, pt) => (Math.abs(pt.ids - frac * total) < Math.abs(best.ids - frac * total) ? pt : best));
  const secondHalf = points.filter((pt) => pt.ids >= total / 2).map((pt) => ({ x: pt.ids, y: pt.rssMB * MB }));
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
    bytesPerIdSecondHalf: slope(secondHalf),
    oldestIdStillDeduplicated: repeat.duplicates === 1,
  };
  console.log(`dedup memory: ${total} ids in ${seconds.toFixed(1)} s (${Math.round(result.idsPerSecond)} ids/s); RSS ${result.rssAt10MB.toFixed(1)} MB at 10%, ${result.rssAt50MB.toFixed(1)} MB at 50%, ${result.rssAt100MB.toFixed(1)} MB at 100%; ${result.bytesPerIdSecondHalf.toFixed(2)} B/id over the second half; oldest id deduplicated: ${result.oldestIdStillDeduplicated}`);
  if (!result.oldestIdStillDeduplicated) throw new Error('the first id was not found as a duplicate at the end: the window is not kept');
  await emitResult('dedup-memory', result);
} finally {
  await rm(dir, { recursive: true, force: true });
}
