#!/usr/bin/env node
// Agent buffer benchmark (DESIGN §7): durable append throughput against raw
// LevelDB on the same disk in the same run, RSS under load and idle, and the
// restart time with 1,000,000 buffered events. Each measurement runs in its
// own child process so heaps and RSS do not mix. Needs `npm run build` first.
//
// Every case first appends `--warmup` events untimed (the same way, in the
// same process), then times `--events`: a 100k-event run lasts about a
// second, and its first tenths are V8 compiling the append path, not the
// rate a running agent sustains. The warm-up's own rate is reported too.
//
//   node bench/agent-buffer.mjs [--events N] [--warmup N] [--producers P] [--batch B] [--restart-events N]
import { spawn } from 'node:child_process';
import { mkdtemp, rm, mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { memorySync } from './lib/proc-stat.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'main' },
    dir: { type: 'string' },
    events: { type: 'string', default: '400000' },
    warmup: { type: 'string', default: '100000' },
    producers: { type: 'string', default: '64' },
    batch: { type: 'string', default: '10' },
    sync: { type: 'string', default: 'true' },
    durability: { type: 'string', default: 'fsync' },
    'restart-events': { type: 'string', default: '1000000' },
    sink: { type: 'string', default: 'false' },
  },
});

// Every measuring child runs with the V8 flags `meteorzx agent` sets on itself (agent/v8-flags.ts),
// the raw LevelDB references too, so the buffer is measured as the agent runs it and the ratio
// compares like with like. (`node --semi-space-growth-factor=1` would not do: see that file.)
if (args.mode !== 'main') {
  const { applyAgentV8Flags } = await import('../dist/agent/v8-flags.js');
  applyAgentV8Flags();
}

// ≈300 bytes of JSON once id and time are filled in, like a typical audit line.
function makeEvent(i) {
  return {
    type: 'auth.login',
    actor: `user-${i % 5000}`,
    action: 'login',
    target: 'ssh://host-17.example.internal:22',
    outcome: i % 10 === 0 ? 'failure' : 'success',
    data: { ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, session: `s-${i.toString(36)}`, method: 'publickey', tty: 'pts/3' },
  };
}

let maxHeap = { heapTotal: 0, heapUsed: 0, external: 0 };

/**
 * This process's VmRSS and RssAnon, MB. RssAnon leaves out file pages: the
 * node binary's (≈43 MB, shared by every Node process) and those of the
 * table files LevelDB maps to read them, which grow with what it has written.
 */
const memoryNow = () => memorySync('self');

/** Samples every 20 ms until stopped; `stop()` gives the maxima `{rssMB, anonMB}`. */
function rssSampler() {
  const max = memoryNow();
  const sample = () => {
    const now = memoryNow();
    max.rssMB = Math.max(max.rssMB, now.rssMB);
    max.anonMB = Math.max(max.anonMB, now.anonMB);
  };
  const t = setInterval(() => {
    sample();
    const m = process.memoryUsage();
    for (const k of Object.keys(maxHeap)) maxHeap[k] = Math.max(maxHeap[k], m[k] / MB);
  }, 20);
  return () => { clearInterval(t); sample(); return max; };
}

const MB = 1024 * 1024;

async function runBuffer() {
  const { LevelBuffer } = await import('../dist/agent/buffer/index.js');
  const total = Number(args.events);
  const producers = Number(args.producers);
  const batch = Number(args.batch);
  const buffer = new LevelBuffer({ dataDir: args.dir, id: 'bench-agent', durability: args.durability, maxBytes: 8 * 1024 * MB });
  await buffer.open();
  const idle = memoryNow();
  // The push sink's share of the work: read right behind the head and ack.
  let delivered = 0;
  let sinkRunning = args.sink === 'true';
  const sink = (async () => {
    while (sinkRunning) {
      const got = await buffer.read(delivered, 1000);
      if (got.length === 0) { await new Promise((r) => setTimeout(r, 2)); continue; }
      delivered = got[got.length - 1].seq;
      await buffer.ack(delivered);
    }
  })();
  const stopRss = rssSampler();
  let next = 0;
  const produce = (upTo) => Promise.all(Array.from({ length: producers }, async () => {
    while (next < upTo) {
      const base = next;
      next += batch;
      const events = [];
      for (let k = 0; k < batch; k++) events.push(makeEvent(base + k));
      await buffer.append(events);
    }
  }));
  const warm = await timed(() => produce(Number(args.warmup)), () => buffer.state().head);
  const run = await timed(() => produce(Number(args.warmup) + total), () => buffer.state().head - warm.events);
  sinkRunning = false;
  await sink;
  const max = stopRss();
  const state = buffer.state();
  await buffer.close();
  return { ...run, warmup: warm, rssMaxMB: max.rssMB, anonMaxMB: max.anonMB, idleRssMB: idle.rssMB, idleAnonMB: idle.anonMB, storedBytes: state.bufferedBytes, maxHeap };
}

/** Runs `work`, then `{events, seconds, eventsPerSec, cpuUsPerEvent}` with `count()` as the events it did. */
async function timed(work, count) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const events = count();
  return { events, seconds, eventsPerSec: events / seconds, cpuUsPerEvent: events === 0 ? 0 : (cpu.user + cpu.system) / events };
}

async function runRaw() {
  const { ClassicLevel } = await import('classic-level');
  const db = new ClassicLevel(args.dir, { valueEncoding: 'utf8' });
  await db.open();
  const total = Number(args.events);
  const sync = args.sync === 'true';
  const stopRss = rssSampler();
  const now = new Date().toISOString();
  const warmup = Number(args.warmup);
  let bytes = 0;
  const put = async (from, to) => {
    for (let i = from; i < to; i += 1000) {
      const ops = [];
      for (let k = i; k < i + 1000 && k < to; k++) {
        const value = JSON.stringify({ id: `01JBENCH${String(k).padStart(18, '0')}`, time: now, ...makeEvent(k) });
        bytes += value.length;
        ops.push({ type: 'put', key: `e!${String(k).padStart(12, '0')}`, value });
      }
      await db.batch(ops, { sync });
    }
  };
  const warm = await timed(() => put(0, warmup), () => warmup);
  const run = await timed(() => put(warmup, warmup + total), () => total);
  const max = stopRss();
  await db.close();
  return { ...run, warmup: warm, rssMaxMB: max.rssMB, anonMaxMB: max.anonMB, avgEventBytes: bytes / (warmup + total) };
}

async function runFill() {
  const { LevelBuffer } = await import('../dist/agent/buffer/index.js');
  const buffer = new LevelBuffer({ dataDir: args.dir, id: 'bench-agent', durability: 'os', maxBytes: 8 * 1024 * MB, maxCommitEvents: 4000 });
  await buffer.open();
  const total = Number(args['restart-events']);
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < total) {
      const base = next;
      const n = Math.min(500, total - base);
      next += n;
      await buffer.append(Array.from({ length: n }, (_, k) => makeEvent(base + k)));
    }
  }));
  // Deliver half, so the restart resumes from a cursor in the middle.
  await buffer.ack(Math.floor(total / 2));
  const state = buffer.state();
  await buffer.close();
  return { head: state.head, delivered: state.delivered };
}

async function runRestart() {
  const t0 = performance.now();
  const { LevelBuffer } = await import('../dist/agent/buffer/index.js');
  const tImport = performance.now();
  const buffer = new LevelBuffer({ dataDir: args.dir, id: 'bench-agent' });
  await buffer.open();
  const tOpen = performance.now();
  const first = await buffer.read(buffer.state().delivered, 500);
  const tRead = performance.now();
  const state = buffer.state();
  await new Promise((r) => setTimeout(r, 200));
  const idle = memoryNow();
  await buffer.close();
  return {
    bufferedEvents: state.bufferedEvents,
    head: state.head,
    firstReadSeq: first[0]?.seq,
    importMs: tImport - t0,
    openMs: tOpen - tImport,
    openToFirstReadMs: tRead - tImport,
    idleRssMB: idle.rssMB,
    idleAnonMB: idle.anonMB,
  };
}

function child(mode, extra) {
  return new Promise((resolve, reject) => {
    const argv = [fileURLToPath(import.meta.url), '--mode', mode, ...Object.entries(extra).flatMap(([k, v]) => [`--${k}`, String(v)])];
    const p = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${mode} exited with ${code}`))));
  });
}

async function main() {
  const base = await mkdtemp(join(tmpdir(), 'meteorzx-bench-buffer-'));
  const common = { events: args.events, warmup: args.warmup, producers: args.producers, batch: args.batch };
  try {
    const results = {};
    results.rawNoSync = await child('raw', { ...common, dir: join(base, 'raw-nosync'), sync: false });
    results.rawSync = await child('raw', { ...common, dir: join(base, 'raw-sync'), sync: true });
    results.bufferFsync = await child('buffer', { ...common, dir: join(base, 'buf-fsync'), durability: 'fsync' });
    results.bufferFsyncSingle = await child('buffer', { ...common, dir: join(base, 'buf-fsync-1'), durability: 'fsync', batch: 1 });
    results.bufferOs = await child('buffer', { ...common, dir: join(base, 'buf-os'), durability: 'os' });
    results.bufferFsyncWithSink = await child('buffer', { ...common, dir: join(base, 'buf-fsync-sink'), durability: 'fsync', sink: true });
    const fill = await child('fill', { dir: join(base, 'restart'), 'restart-events': args['restart-events'] });
    results.restart = { ...(await child('restart', { dir: join(base, 'restart') })), filled: fill };

    const ratio = results.bufferFsync.eventsPerSec / results.rawSync.eventsPerSec;
    const rows = [
      ['raw LevelDB, 1 key/event, 1000/batch, no sync', results.rawNoSync],
      ['raw LevelDB, 1 key/event, 1000/batch, sync', results.rawSync],
      [`buffer fsync, ${args.producers} producers x ${args.batch} events`, results.bufferFsync],
      [`buffer fsync, ${args.producers} producers x 1 event`, results.bufferFsyncSingle],
      [`buffer os, ${args.producers} producers x ${args.batch} events`, results.bufferOs],
      [`buffer fsync, ${args.producers}x${args.batch}, + push sink read/ack`, results.bufferFsyncWithSink],
    ];
    console.log(`\nAgent buffer — ${args.events} events of ~${Math.round(results.rawSync.avgEventBytes)} B timed after ${args.warmup} untimed (warm-up), same disk, same run`);
    console.log('case'.padEnd(58) + 'events/s'.padStart(12) + 'max RSS MB'.padStart(12) + 'max anon MB'.padStart(13) + 'CPU µs/event'.padStart(14) + 'warm-up ev/s'.padStart(14));
    for (const [name, c] of rows) {
      console.log(name.padEnd(58) + Math.round(c.eventsPerSec).toString().padStart(12) + c.rssMaxMB.toFixed(1).padStart(12) + c.anonMaxMB.toFixed(1).padStart(13) + c.cpuUsPerEvent.toFixed(1).padStart(14) + (c.warmup.events > 0 ? Math.round(c.warmup.eventsPerSec).toString() : '-').padStart(14));
    }
    console.log(`load average at the end: ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} cores (a loaded box slows every row alike)`);
    console.log(`durable buffer / raw synced LevelDB: ${ratio.toFixed(2)}x   (budget: >= 100000 events/s durable, RSS <= 60 MB)`);
    const r = results.restart;
    console.log(`restart with ${r.bufferedEvents} undelivered of ${r.head} buffered: open ${r.openMs.toFixed(1)} ms, open -> first read ${r.openToFirstReadMs.toFixed(1)} ms (budget < 1000 ms), idle RSS ${r.idleRssMB.toFixed(1)} MB (budget <= 40 MB), of it private (RssAnon) ${r.idleAnonMB.toFixed(1)} MB\n`);
    const report = {
      bench: 'agent-buffer', at: new Date().toISOString(), node: process.version, params: { ...common, restartEvents: args['restart-events'] },
      results, ratioDurableToRawSync: ratio,
      budgets: { durableEventsPerSec: 100_000, restartMs: 1000, rssLoadMB: 60, rssIdleMB: 40 },
    };
    await mkdir(join(here, 'results'), { recursive: true });
    await writeFile(join(here, 'results', 'agent-buffer.json'), JSON.stringify(report, null, 2) + '\n');
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

const modes = { buffer: runBuffer, raw: runRaw, fill: runFill, restart: runRestart };
if (args.mode === 'main') await main();
else process.stdout.write(JSON.stringify(await modes[args.mode]()));
