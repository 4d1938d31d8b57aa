#!/usr/bin/env node
// Agent → gateway end to end (DESIGN §7): the real CLI from dist/ for both
// processes (temp dirs, free ports, durability fsync on both sides),
// producers POSTing NDJSON batches of ≈300-byte events to the agent's intake
// for a fixed time, then waiting until the agent has delivered everything.
// Per case: intake events/s (acked by the agent), end-to-end events/s (first
// POST → all delivered), CPU seconds per million events for each process
// (/proc/<pid>/stat utime+stime), the agent's RSS (idle before the load, max
// under it), and p50/p99 latency from the intake's ack to the gateway's
// receipt (`ingest.receivedAt`) for marked events (one per batch, own source).
// `fake` sinks measure the agent alone: an HTTP server that acks at once
// (its own process), or the local Mosquitto for MQTT.
// Needs `npx tsc -p tsconfig.json` first.
//
//   node bench/agent-e2e.mjs [--seconds 10] [--producers 4] [--batch 1000]
//        [--cases http-gateway,mqtt-gateway,http-fake,mqtt-fake] [--runs 1]
//        [--push-events 1000] [--in-flight 4] [--gzip-above BYTES]
//        [--agent-node-args="--cpu-prof --cpu-prof-dir=/tmp/prof"]
//        [--gateway-node-args="--cpu-prof --cpu-prof-dir=/tmp/prof-gw"]
//        [--timeline]   (every 500 ms to stderr: acked, head, delivered, CPU of agent and sink)
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, mkdir, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, URLSearchParams } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { fetch, Pool } from 'undici';
import { GATEWAY_NODE_FLAGS, gatewayEnv } from '../packaging/lib/products.mjs';
import { cpuFromStat, memorySync } from './lib/proc-stat.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = join(here, '..', 'bin', 'meteorzx.js');
const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'main' },
    port: { type: 'string' },
    seconds: { type: 'string', default: process.env.METEORZX_BENCH_SECONDS ?? '10' },
    producers: { type: 'string', default: '4' },
    batch: { type: 'string', default: '1000' },
    cases: { type: 'string', default: 'http-gateway,mqtt-gateway,http-fake,mqtt-fake' },
    runs: { type: 'string', default: '1' },
    mosquitto: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
    'agent-node-args': { type: 'string', default: '' },
    'gateway-node-args': { type: 'string', default: '' },
    'push-events': { type: 'string', default: '' },
    'in-flight': { type: 'string', default: '' },
    'gzip-above': { type: 'string', default: '' },
    timeline: { type: 'boolean', default: false },
  },
});

// ≈300 bytes once the agent adds id, time, agent, epoch, seq, prev and hash... of input ≈250 B.
function line(p, i, mark) {
  return JSON.stringify({
    ...(mark ? { id: mark, source: 'bench-mark' } : {}),
    type: 'auth.login',
    actor: `user-${i % 5000}`,
    action: 'login',
    target: 'ssh://host-17.example.internal:22',
    outcome: i % 10 === 0 ? 'failure' : 'success',
    data: { ip: `10.${p}.${(i >> 8) & 255}.${i & 255}`, session: `s-${p}-${i.toString(36)}`, method: 'publickey', tty: 'pts/3' },
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function cpuSeconds(pid) {
  try {
    return cpuFromStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return NaN;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(probe, what, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const children = new Set();
function spawnNode(argv, nodeArgs = [], env = process.env) {
  const p = spawn(process.execPath, [...nodeArgs, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env });
  children.add(p);
  const logs = [];
  let partial = '';
  p.stderr.on('data', (d) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop() ?? '';
    logs.push(...parts);
    if (logs.length > 2000) logs.splice(0, 1000);
  });
  p.stdout.on('data', () => {});
  const exited = new Promise((r) => p.once('exit', (code) => { children.delete(p); r(code); }));
  return {
    p, logs, exited,
    async stop() {
      if (p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

async function startGateway(dir, httpPort, mqttPort) {
  const config = join(dir, 'gateway.json');
  await writeFile(config, JSON.stringify({ dataDir: join(dir, 'gateway-data'), logLevel: 'warn', http: { listen: `127.0.0.1:${httpPort}` }, mqtt: { listen: `127.0.0.1:${mqttPort}` } }));
  const extra = args['gateway-node-args'] ? args['gateway-node-args'].split(' ') : [];
  const g = spawnNode([BIN, 'gateway', '--config', config], [...GATEWAY_NODE_FLAGS, ...extra], gatewayEnv());
  const url = `http://127.0.0.1:${httpPort}`;
  await waitFor(async () => {
    if (g.p.exitCode !== null) throw new Error(`gateway exited: ${g.logs.slice(-5).join('\n')}`);
    return (await fetch(`${url}/healthz`)).ok;
  }, 'gateway healthz');
  return { ...g, url };
}

async function startFakeHttp(port) {
  const f = spawnNode([fileURLToPath(import.meta.url), '--mode', 'fake-http', '--port', String(port)]);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 'fake sink');
  return f;
}

async function runCase(name, seconds) {
  const [transport, sinkKind] = name.split('-');
  const dir = await mkdtemp(join(tmpdir(), `meteorzx-bench-e2e-${name}-`));
  const intakePort = await freePort();
  const pullPort = await freePort();
  const httpPort = await freePort();
  const mqttPort = await freePort();
  let sink;
  try {
    if (sinkKind === 'gateway') sink = await startGateway(dir, httpPort, mqttPort);
    else if (transport === 'http') sink = await startFakeHttp(httpPort);
    const batchCfg = { maxEvents: Number(args['push-events'] || 1000), maxWaitMs: 20 };
    const inFlight = args['in-flight'] ? { maxInFlight: Number(args['in-flight']) } : {};
    const gzip = args['gzip-above'] ? { gzipAboveBytes: Number(args['gzip-above']) } : {};
    const push = transport === 'http'
      ? { http: { url: `http://127.0.0.1:${httpPort}/v1/events`, ...inFlight, ...gzip }, batch: batchCfg }
      : { mqtt: { url: sinkKind === 'gateway' ? `mqtt://127.0.0.1:${mqttPort}` : args.mosquitto, ...(sinkKind === 'gateway' ? {} : { topicPrefix: `bench${process.pid}${Date.now() % 100000}` }), ...inFlight }, batch: batchCfg };
    const config = join(dir, 'agent.json');
    await writeFile(config, JSON.stringify({
      id: 'bench-agent', dataDir: join(dir, 'agent-data'), logLevel: 'warn',
      buffer: { durability: 'fsync' },
      intake: { http: { listen: `127.0.0.1:${intakePort}` } }, pull: { listen: `127.0.0.1:${pullPort}` },
      push, limits: { maxBatchEvents: 5000 },
    }));
    const nodeArgs = args['agent-node-args'] ? args['agent-node-args'].split(' ') : [];
    const agent = spawnNode([BIN, 'agent', '--config', config], nodeArgs);
    const status = async () => (await fetch(`http://127.0.0.1:${pullPort}/v1/status`)).json();
    await waitFor(async () => {
      if (agent.p.exitCode !== null) throw new Error(`agent exited: ${agent.logs.slice(-5).join('\n')}`);
      return (await status()).head !== undefined;
    }, 'agent status');
    await sleep(1000);
    const { rssMB: idleRss, anonMB: idleAnon } = memorySync(agent.p.pid);

    const producers = Number(args.producers);
    const batch = Number(args.batch);
    const pool = new Pool(`http://127.0.0.1:${intakePort}`, { connections: producers, pipelining: 1 });
    let acked = 0;
    let failed = 0;
    const marks = new Map();
    let running = true;
    let maxRss = idleRss;
    let maxAnon = idleAnon;
    const rssTimer = setInterval(() => {
      const now = memorySync(agent.p.pid);
      maxRss = Math.max(maxRss, now.rssMB);
      maxAnon = Math.max(maxAnon, now.anonMB);
    }, 100);
    const cpu0 = { agent: cpuSeconds(agent.p.pid), sink: sink ? cpuSeconds(sink.p.pid) : NaN };
    const t0 = performance.now();
    let timeline;
    if (args.timeline) {
      let last = { t: t0, agent: cpu0.agent, sink: cpu0.sink };
      timeline = setInterval(async () => {
        const st = await status().catch(() => ({}));
        const now = { t: performance.now(), agent: cpuSeconds(agent.p.pid), sink: sink ? cpuSeconds(sink.p.pid) : NaN };
        const dt = (now.t - last.t) / 1000;
        console.error(`t=${((now.t - t0) / 1000).toFixed(1)}s acked=${acked} head=${st.head} delivered=${st.delivered} agentCpu=${((now.agent - last.agent) / dt).toFixed(2)} sinkCpu=${((now.sink - last.sink) / dt).toFixed(2)}`);
        last = now;
      }, 500);
    }
    await Promise.all(Array.from({ length: producers }, async (_, p) => {
      let i = 0;
      let n = 0;
      while (running) {
        const mark = `mark-${p}-${n++}`;
        let body = '';
        for (let k = 0; k < batch; k++) body += line(p, i++, k === 0 ? mark : undefined) + '\n';
        const res = await pool.request({ method: 'POST', path: '/v1/events', headers: { 'content-type': 'application/x-ndjson' }, body });
        await res.body.text();
        if (res.statusCode === 200) { acked += batch; marks.set(mark, Date.now()); } else { failed += 1; await sleep(50); }
        if (performance.now() - t0 > seconds * 1000) running = false;
      }
    }));
    const tIntake = performance.now();
    const head = (await status()).head;
    await waitFor(async () => (await status()).delivered >= head, 'agent drained', 600_000);
    const tDrained = performance.now();
    clearInterval(rssTimer);
    if (timeline) clearInterval(timeline);
    const cpu1 = { agent: cpuSeconds(agent.p.pid), sink: sink ? cpuSeconds(sink.p.pid) : NaN };
    await pool.close();
    let latency = { p50: NaN, p99: NaN, samples: 0 };
    if (sinkKind === 'gateway') {
      const lat = [];
      let cursor = null;
      await sleep(500);
      do {
        const q = new URLSearchParams({ source: 'bench-mark', limit: '10000', ...(cursor ? { cursor } : {}) });
        const res = await fetch(`${sink.url}/v1/events?${q}`);
        for (const l of (await res.text()).split('\n')) {
          if (!l) continue;
          const e = JSON.parse(l);
          const ack = marks.get(e.id);
          if (ack !== undefined) lat.push(Date.parse(e.ingest.receivedAt) - ack);
        }
        cursor = res.headers.get('x-next-cursor');
      } while (cursor);
      lat.sort((a, b) => a - b);
      const pct = (q) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))];
      latency = { p50: pct(0.5), p99: pct(0.99), samples: lat.length };
    }
    await sleep(1500);
    const settledRss = memorySync(agent.p.pid).rssMB;
    await agent.stop();
    if (sink) await sink.stop();
    const events = acked;
    return {
      case: name, events, failedPosts: failed,
      intakePerSec: events / ((tIntake - t0) / 1000),
      e2ePerSec: events / ((tDrained - t0) / 1000),
      agentCpuSecPerM: ((cpu1.agent - cpu0.agent) / events) * 1e6,
      sinkCpuSecPerM: ((cpu1.sink - cpu0.sink) / events) * 1e6,
      agentIdleRssMB: idleRss, agentMaxRssMB: maxRss, agentSettledRssMB: settledRss, agentIdleAnonMB: idleAnon, agentMaxAnonMB: maxAnon,
      latencyMs: latency,
    };
  } finally {
    if (sink) await sink.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function fakeHttp() {
  const answer = '{"accepted":0,"duplicates":0,"rejected":[]}';
  const server = createHttpServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(answer));
  });
  server.keepAliveTimeout = 30_000;
  server.listen(Number(args.port), '127.0.0.1');
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

function median(xs) {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)];
}

async function main() {
  const cases = args.cases.split(',');
  const runs = Number(args.runs);
  const all = [];
  const load0 = loadavg()[0];
  for (let r = 0; r < runs; r++) for (const c of cases) {
    const res = await runCase(c, Number(args.seconds));
    console.error(JSON.stringify(res));
    all.push(res);
  }
  const rows = cases.map((c) => {
    const rs = all.filter((r) => r.case === c);
    const m = (f) => median(rs.map(f));
    return { case: c, runs: rs.length, intakePerSec: m((r) => r.intakePerSec), e2ePerSec: m((r) => r.e2ePerSec), agentCpuSecPerM: m((r) => r.agentCpuSecPerM),
      sinkCpuSecPerM: m((r) => r.sinkCpuSecPerM), agentIdleRssMB: m((r) => r.agentIdleRssMB), agentMaxRssMB: m((r) => r.agentMaxRssMB),
      agentIdleAnonMB: m((r) => r.agentIdleAnonMB), agentMaxAnonMB: m((r) => r.agentMaxAnonMB),
      p50ms: m((r) => r.latencyMs.p50), p99ms: m((r) => r.latencyMs.p99) };
  });
  const f = (x, d = 0) => (Number.isNaN(x) ? '-' : x.toFixed(d));
  console.log(`\nAgent → gateway, ${args.producers} producers × NDJSON batches of ${args.batch}, ${args.seconds} s per run, medians of ${runs} run(s); durability fsync on both sides`);
  console.log(['case', 'intake ev/s', 'e2e ev/s', 'agent CPU s/M', 'sink CPU s/M', 'RSS idle', 'RSS max', 'anon max', 'p50 ms', 'p99 ms'].map((h, i) => (i === 0 ? h.padEnd(14) : h.padStart(13))).join(''));
  for (const r of rows) {
    console.log([r.case.padEnd(14), f(r.intakePerSec), f(r.e2ePerSec), f(r.agentCpuSecPerM, 1), f(r.sinkCpuSecPerM, 1), f(r.agentIdleRssMB, 1), f(r.agentMaxRssMB, 1), f(r.agentMaxAnonMB, 1), f(r.p50ms), f(r.p99ms)].map((v, i) => (i === 0 ? v : v.padStart(13))).join(''));
  }
  const load1 = loadavg()[0];
  console.log(`load average (1 min) ${load0.toFixed(1)} → ${load1.toFixed(1)} on ${cpus().length} cores; budgets: e2e ≥ 50k/s HTTP, ≥ 30k/s MQTT; agent RSS ≤ 60 MB load, ≤ 40 MB idle\n`);
  await mkdir(join(here, 'results'), { recursive: true });
  await writeFile(join(here, 'results', 'agent-e2e.json'), JSON.stringify({ bench: 'agent-e2e', at: new Date().toISOString(), node: process.version, load: [load0, load1], params: { seconds: args.seconds, producers: args.producers, batch: args.batch, runs }, rows, runs: all }, null, 2) + '\n');
}

process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
if (args.mode === 'fake-http') await fakeHttp();
else await main();
