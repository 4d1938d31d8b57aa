#!/usr/bin/env node
// Gateway store benchmark (DESIGN §3, §7): events/s committed through the
// whole pipeline (validate → integrity → dedup → one synced LevelDB commit
// with custody, indexes and registry) against, on the same disk in the same
// run, a raw LevelDB synced batch put of one key per event. ≈300-byte events.
// Needs `npm run build` first.
//
// A third row runs the MQTT shape: many callers with one event each (1,000
// devices, one PUBLISH in flight each), where per-call overhead shows.
//
//   node bench/gateway-store.mjs [--events N] [--producers P] [--batch B] [--compression L]
//        [--max-events M (commit.maxEvents, default the gateway's 1000)] [--single-producers 1000 (0: skip that row)]
import { mkdtemp, rm, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    producers: { type: 'string', default: '32' },
    batch: { type: 'string', default: '100' },
    compression: { type: 'string', default: '1' },
    'max-events': { type: 'string', default: '1000' },
    'single-producers': { type: 'string', default: '1000' },
  },
});
const total = Number(args.events);
const producers = Number(args.producers);
const batch = Number(args.batch);

// ≈300 bytes of JSON, like an agent's chained audit line (id, time, agent fields present).
function makeEvent(i) {
  return {
    id: `01JBENCH${i.toString(36).padStart(18, '0')}`,
    source: `host-${i % 50}`,
    time: '2026-03-10T10:00:00.000Z',
    type: 'auth.login',
    actor: `user-${i % 5000}`,
    action: 'login',
    target: 'ssh://host-17.example.internal:22',
    outcome: i % 10 === 0 ? 'failure' : 'success',
    data: { ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, session: `s-${i.toString(36)}`, method: 'publickey' },
  };
}

async function raw(dir) {
  const { Level } = await import('level');
  const db = new Level(join(dir, 'raw'), { valueEncoding: 'utf8' });
  await db.open();
  const per = 1000;
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < total; i += per) {
    const ops = [];
    for (let j = i; j < Math.min(total, i + per); j += 1) ops.push({ type: 'put', key: `e!${j.toString().padStart(12, '0')}`, value: JSON.stringify(makeEvent(j)) });
    await db.batch(ops, { sync: true });
  }
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  await db.close();
  return {
    name: `raw LevelDB batch put, one key per event, sync (${per}/batch)`,
    events: total,
    seconds,
    perSecond: Math.round(total / seconds),
    cpuMicrosPerEvent: Number(((used.user + used.system) / total).toFixed(1)),
  };
}

async function pipeline(dir, producers, batch, total) {
  const { LevelStorage } = await import('../dist/gateway/storage/level/index.js');
  const { createPipeline } = await import('../dist/gateway/pipeline/index.js');
  const storage = new LevelStorage({ dataDir: dir, compressionLevel: Number(args.compression) });
  await storage.open();
  let commits = 0;
  const commit = storage.commit.bind(storage);
  storage.commit = (b) => ((commits += 1), commit(b));
  const p = createPipeline({
    storage,
    gatewayName: 'bench',
    config: {
      pipeline: { dedup: { window: 7 * 86_400_000, cacheSize: 100_000 }, transforms: [], rules: [] },
      commit: { maxEvents: Number(args['max-events']), maxWaitMs: 5 },
    },
    maxQueuedEvents: 1_000_000,
  });
  await p.start();
  // Each call's items are built on the spot (≈0.5 µs/event, counted below), as ingress hands over parsed items.
  const calls = Math.ceil(total / batch);
  const body = (c) => {
    const items = [];
    for (let j = c * batch; j < Math.min(total, (c + 1) * batch); j += 1) {
      const value = makeEvent(j);
      items.push({ index: j - c * batch, value, bytes: 300 });
    }
    return items;
  };
  let next = 0;
  let accepted = 0;
  let maxRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (maxRss = Math.max(maxRss, process.memoryUsage().rss)), 50);
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: producers }, async (_, k) => {
      while (next < calls) {
        const items = body(next++);
        const r = await p.ingest(items, { method: 'http', peer: `bench-${k}` });
        accepted += r.accepted;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  clearInterval(sampler);
  await p.close();
  const report = await storage.verify();
  await storage.close();
  if (accepted !== total || !report.ok || report.events !== total) throw new Error(`bench run is wrong: accepted ${accepted}, verify ${JSON.stringify(report).slice(0, 200)}`);
  return {
    name: `pipeline → LevelStorage, sync (${producers} producers × ${batch}/call, ${commits} commits)`,
    events: total,
    seconds,
    perSecond: Math.round(total / seconds),
    cpuMicrosPerEvent: Number(((used.user + used.system) / total).toFixed(1)),
    maxRssMB: Math.round(maxRss / 1024 / 1024),
  };
}

const dir = await mkdtemp(join(tmpdir(), 'meteorzx-bench-gw-'));
try {
  const rows = [await raw(dir), await pipeline(join(dir, 'gw'), producers, batch, total)];
  const single = Number(args['single-producers']);
  if (single > 0) rows.push(await pipeline(join(dir, 'gw1'), single, 1, Math.ceil(total / 2)));
  const ratio = rows[1].perSecond / rows[0].perSecond;
  console.log('\nGateway store (≈300 B events, synced writes, same disk, same run)\n');
  // CPU per event (all threads of this process) is the number that survives a busy machine; events/s does not.
  console.log('| run | events | seconds | events/s | CPU µs/event |');
  console.log('|---|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.name} | ${r.events} | ${r.seconds.toFixed(2)} | ${r.perSecond} | ${r.cpuMicrosPerEvent} |`);
  console.log(`\npipeline / raw = ${ratio.toFixed(2)}×; pipeline max RSS ${rows[1].maxRssMB} MB`);
  // bench/run.mjs names the result file; run by hand, it goes to bench/results/.
  const out = process.env.METEORZX_BENCH_RESULT || join(here, 'results', 'gateway-store.json');
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify({ at: new Date().toISOString(), rows, ratio }, null, 2));
} finally {
  await rm(dir, { recursive: true, force: true });
}
