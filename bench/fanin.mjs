#!/usr/bin/env node
// Device fan-in (issue 8): 1,000 and 5,000 MQTT devices at QoS 1, each with
// one publish in flight, against the gateway (stored before PUBACK) and, in
// the same run with the same generator, the Mosquitto broker on the machine.
// A wrapper over bench/gateway-mqtt.mjs (which owns the load generator), run
// once per level with the HTTP part off. Needs `npm run build` first.
//
//   node bench/fanin.mjs [--levels 1000,5000] [--seconds 10] [--warmup 2]
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './lib/processes.mjs';
import { withOpenFiles } from './lib/fd-limit.mjs';
import { emitResult } from './lib/emit.mjs';

const { values: args } = parseArgs({
  options: {
    levels: { type: 'string', default: '1000,5000' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
  },
});

async function level(clients) {
  // Generator and broker each hold one descriptor per device, plus slack for LevelDB and the process.
  const { argv, note } = withOpenFiles(clients * 2 + 512, [
    process.execPath,
    join(ROOT, 'bench', 'gateway-mqtt.mjs'),
    '--clients', String(clients), '--seconds', args.seconds, '--warmup', args.warmup, '--no-http',
  ]);
  const started = Date.now();
  let out = '';
  const code = await new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    p.stdout.on('data', (b) => {
      out += b;
      process.stdout.write(b);
    });
    p.once('error', reject);
    p.once('close', (c, signal) => resolve(c ?? signal));
  });
  if (code !== 0) throw new Error(`gateway-mqtt.mjs --clients ${clients} exited with ${code}`);
  // Its table on stdout is this run's own; bench/results/gateway-mqtt.json may be another run's (others bench this machine too).
  const mosquitto = tableRow(out, 'Mosquitto (bare broker, reference)');
  const gateway = tableRow(out, 'gateway MQTT (stored before PUBACK)');
  if (gateway === undefined) {
    const r = JSON.parse(await readFile(join(ROOT, 'bench', 'results', 'gateway-mqtt.json'), 'utf8'));
    if (Date.parse(r.at) < started - 1000 || r.clients !== clients) throw new Error('no result table on stdout and gateway-mqtt.json is not this run’s');
    return { clients, fdNote: note, mosquitto: r.mosquitto, gateway: r.gatewayMqtt, ratio: r.ratio ?? null, p99Ratio: r.p99Ratio ?? null };
  }
  const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? Number((a / b).toFixed(3)) : null);
  return { clients, fdNote: note, mosquitto: mosquitto ?? {}, gateway, ratio: ratio(gateway.perSecond, mosquitto?.perSecond), p99Ratio: ratio(gateway.p99ms, mosquitto?.p99ms) };
}

/** `{perSecond, p50ms, p99ms}` from gateway-mqtt.mjs's printed row `label  events/s  p50  p99  note`. */
function tableRow(out, label) {
  const line = out.split('\n').find((l) => l.startsWith(label));
  const m = line && /^\s+(\d+)\s+([\d.]+)\s+([\d.]+)/.exec(line.slice(label.length));
  return m ? { perSecond: Number(m[1]), p50ms: Number(m[2]), p99ms: Number(m[3]) } : undefined;
}

const levels = [];
for (const n of args.levels.split(',').map(Number)) levels.push(await level(n));
for (const l of levels) {
  console.log(`fan-in ${l.clients}: gateway ${l.gateway.perSecond} ev/s p99 ${l.gateway.p99ms} ms; Mosquitto ${l.mosquitto.perSecond ?? '-'} ev/s p99 ${l.mosquitto.p99ms ?? '-'} ms; ratio ${l.ratio ?? '-'} (${l.fdNote})`);
}
await emitResult('fanin', { seconds: Number(args.seconds), levels });
