#!/usr/bin/env node
// Gateway MQTT ingress benchmark (DESIGN §7): N concurrent MQTT devices, each
// publishing one ≈300-byte event at QoS 1 and waiting for its PUBACK before the
// next (a device's closed loop), for a fixed time. Measured against the real
// gateway CLI (every event validated, deduplicated and durably stored before
// its PUBACK) and, in the same run with the same generator, against the bare
// Mosquitto broker at 127.0.0.1:1883 as the reference. Also HTTP ingest
// events/s (NDJSON batches). The gateway runs with the node flags it ships
// with (packaging/lib/products.mjs GATEWAY_NODE_FLAGS). Needs `npm run build` first.
//
//   node bench/gateway-mqtt.mjs [--clients 1000] [--seconds 10] [--warmup 2]
//        [--mosquitto mqtt://127.0.0.1:1883] [--http-clients 8] [--http-batch 500]
//        [--gateway-node-args "--cpu-prof --cpu-prof-dir=/tmp/prof"] [--no-http] [--no-mosquitto]
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { Pool, request } from 'undici';
import { startGateway } from './lib/processes.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: process.env.METEORZX_BENCH_CLIENTS ?? '1000' },
    seconds: { type: 'string', default: process.env.METEORZX_BENCH_SECONDS ?? '10' },
    warmup: { type: 'string', default: '2' },
    mosquitto: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
    'http-clients': { type: 'string', default: '8' },
    'http-batch': { type: 'string', default: '500' },
    // Extra node flags for the gateway process (profiling: NODE_OPTIONS may not carry --cpu-prof).
    'gateway-node-args': { type: 'string', default: '' },
    'no-http': { type: 'boolean', default: false },
    'no-mosquitto': { type: 'boolean', default: false },
  },
});
const CLIENTS = Number(args.clients);
const SECONDS = Number(args.seconds);
const WARMUP = Number(args.warmup);

function event(client, n) {
  return JSON.stringify({
    id: `bench-${client}-${n}-${Math.random().toString(36).slice(2, 8)}`,
    type: 'auth.login',
    actor: `user-${n % 5000}`,
    action: 'login',
    target: 'ssh://host-17.example.internal:22',
    outcome: n % 10 === 0 ? 'failure' : 'success',
    data: { ip: `10.0.${client % 256}.${n % 256}`, session: `s-${n.toString(36)}`, method: 'publickey' },
  });
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); undefined elsewhere. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in USER_HZ (100/s on Linux)
  } catch {
    return undefined;
  }
}

/** The pid of the local Mosquitto broker, to report its CPU per message beside ours (read-only). */
function mosquittoPid() {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'mosquitto') return Number(entry);
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return undefined;
}

/** Connects `CLIENTS` devices in waves (a SYN flood would measure the kernel, not the broker). */
async function connectAll(url, tag) {
  const clients = [];
  for (let i = 0; i < CLIENTS; i += 50) {
    const wave = [];
    for (let j = i; j < Math.min(CLIENTS, i + 50); j += 1) {
      wave.push(mqtt.connectAsync(url, { clientId: `${tag}-dev-${j}`, reconnectPeriod: 0, clean: true, keepalive: 120, protocolVersion: 4 }));
    }
    clients.push(...(await Promise.all(wave)));
  }
  return clients;
}

/** The closed-loop load: every device keeps exactly one publish in flight. */
async function mqttLoad(url, tag, brokerPid) {
  const clients = await connectAll(url, tag);
  const latencies = [];
  let acked = 0;
  let errors = 0;
  let measuring = false;
  let running = true;
  const loops = clients.map(async (client, i) => {
    let n = 0;
    const topic = `audit/${tag}-dev-${i}/events`;
    while (running) {
      const payload = event(i, n++);
      const t0 = performance.now();
      try {
        await client.publishAsync(topic, payload, { qos: 1 });
      } catch {
        errors += 1;
        return;
      }
      if (measuring) {
        acked += 1;
        latencies.push(performance.now() - t0);
      }
    }
  });
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
  measuring = true;
  const brokerCpu0 = brokerPid === undefined ? undefined : cpuSeconds(brokerPid);
  const genCpu0 = process.cpuUsage();
  const started = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  const genCpu = process.cpuUsage(genCpu0);
  const brokerCpu1 = brokerPid === undefined ? undefined : cpuSeconds(brokerPid);
  running = false;
  await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, 5000))]);
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  latencies.sort((a, b) => a - b);
  return {
    clients: CLIENTS,
    seconds,
    acked,
    perSecond: Math.round(acked / seconds),
    p50ms: Number(percentile(latencies, 50).toFixed(2)),
    p99ms: Number(percentile(latencies, 99).toFixed(2)),
    errors,
    // CPU per acknowledged message: the broker's (from /proc) and the load generator's (this process).
    brokerCpuMicrosPerMsg:
      brokerCpu0 === undefined || brokerCpu1 === undefined || acked === 0 ? undefined : Math.round(((brokerCpu1 - brokerCpu0) * 1e6) / acked),
    generatorCpuMicrosPerMsg: acked === 0 ? undefined : Math.round((genCpu.user + genCpu.system) / acked),
  };
}

async function httpLoad(baseUrl) {
  const conns = Number(args['http-clients']);
  const batch = Number(args['http-batch']);
  const pool = new Pool(baseUrl, { connections: conns });
  let events = 0;
  let measuring = false;
  let running = true;
  let seq = 0;
  const loops = Array.from({ length: conns }, async (_, c) => {
    while (running) {
      const lines = [];
      for (let i = 0; i < batch; i += 1) lines.push(event(100_000 + c, seq++).replace('{', `{"source":"http-${c}",`));
      const res = await pool.request({ path: '/v1/events', method: 'POST', body: lines.join('\n'), headers: { 'content-type': 'application/x-ndjson' } });
      const body = await res.body.json();
      if (res.statusCode === 200 && measuring) events += body.accepted + body.duplicates;
    }
  });
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
  measuring = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  running = false;
  await Promise.all(loops);
  await pool.close();
  return { connections: conns, batch, seconds, events, perSecond: Math.round(events / seconds) };
}

/** Commit count, summed commit seconds and summed batch sizes, from the gateway's /metrics. */
async function commitStats(httpPort) {
  try {
    const text = await (await request(`http://127.0.0.1:${httpPort}/metrics`)).body.text();
    const read = (name) => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
    return {
      commits: read('meteorzx_gateway_store_commit_latency_seconds_count'),
      seconds: read('meteorzx_gateway_store_commit_latency_seconds_sum'),
      attempts: read('meteorzx_gateway_store_commit_batch_size_sum'),
    };
  } catch {
    return undefined;
  }
}

/** Commits during the load (warm-up included): how many, mean attempts per commit, mean ms from hand-over to durable. */
function diffStats(a, b) {
  if (a === undefined || b === undefined) return undefined;
  const commits = b.commits - a.commits;
  return {
    commits,
    meanBatch: Math.round((b.attempts - a.attempts) / commits),
    meanCommitMs: Number((((b.seconds - a.seconds) * 1000) / commits).toFixed(1)),
  };
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'meteorzx-bench-gw-'));
  const results = { bench: 'gateway-mqtt', at: new Date().toISOString(), node: process.version, clients: CLIENTS, seconds: SECONDS };
  try {
    let mosquitto;
    try {
      mosquitto = args['no-mosquitto'] ? { error: 'skipped (--no-mosquitto)' } : await mqttLoad(args.mosquitto, 'mosq', mosquittoPid());
    } catch (err) {
      mosquitto = { error: `Mosquitto reference unavailable at ${args.mosquitto}: ${err.message}` };
    }
    results.mosquitto = mosquitto;

    const gw = await startGateway({ dir, nodeArgs: args['gateway-node-args'].split(' ').filter((a) => a !== '') });
    try {
      const before = await commitStats(gw.http);
      results.gatewayMqtt = await mqttLoad(`mqtt://127.0.0.1:${gw.mqtt}`, 'gw', gw.proc.pid);
      results.gatewayMqtt.commits = diffStats(before, await commitStats(gw.http));
      results.gatewayHttp = args['no-http'] ? { perSecond: '-', connections: 0, batch: 0 } : await httpLoad(`http://127.0.0.1:${gw.http}`);
    } finally {
      await gw.stop();
    }
    if (mosquitto.perSecond) {
      results.ratio = Number((results.gatewayMqtt.perSecond / mosquitto.perSecond).toFixed(3));
      results.p99Ratio = Number((results.gatewayMqtt.p99ms / mosquitto.p99ms).toFixed(3));
      results.budget = { minRatio: 0.7, maxP99Ratio: 2, ok: results.ratio >= 0.7 && results.p99Ratio <= 2 };
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  const rows = [
    ['target', 'events/s', 'p50 ms', 'p99 ms', 'broker CPU µs/msg', 'generator CPU µs/msg', 'note'],
    [
      'Mosquitto (bare broker, reference)',
      results.mosquitto.perSecond ?? '-',
      results.mosquitto.p50ms ?? '-',
      results.mosquitto.p99ms ?? '-',
      results.mosquitto.brokerCpuMicrosPerMsg ?? '-',
      results.mosquitto.generatorCpuMicrosPerMsg ?? '-',
      results.mosquitto.error ?? `${CLIENTS} clients, QoS 1`,
    ],
    [
      'gateway MQTT (stored before PUBACK)',
      results.gatewayMqtt.perSecond,
      results.gatewayMqtt.p50ms,
      results.gatewayMqtt.p99ms,
      results.gatewayMqtt.brokerCpuMicrosPerMsg ?? '-',
      results.gatewayMqtt.generatorCpuMicrosPerMsg ?? '-',
      `ratio ${results.ratio ?? '-'}, p99 ratio ${results.p99Ratio ?? '-'}` +
        (results.gatewayMqtt.commits === undefined
          ? ''
          : `; ${results.gatewayMqtt.commits.commits} commits, mean ${results.gatewayMqtt.commits.meanBatch} events, ${results.gatewayMqtt.commits.meanCommitMs} ms`),
    ],
    ['gateway HTTP ingest (NDJSON)', results.gatewayHttp.perSecond, '-', '-', '-', '-', `${results.gatewayHttp.connections} conns × ${results.gatewayHttp.batch}/batch`],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const r of rows) console.log(r.map((c, i) => String(c).padEnd(widths[i])).join('  '));
  // bench/run.mjs names the result file; run by hand, it goes to bench/results/.
  const out = process.env.METEORZX_BENCH_RESULT || join(here, 'results', 'gateway-mqtt.json');
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
}

await main();
