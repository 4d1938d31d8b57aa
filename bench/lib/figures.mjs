// Turns each bench's own result JSON into the suite's figures:
// `{id, label, value, unit, budget?, budgetOn?: 'ratio', reference?: {label, value}}`.
// One extractor per bench, so a bench keeps its own output format and the
// table stays in one place. A bench this file does not know may emit a
// `figures` array of that shape itself (agent-e2e does, or gets an extractor here).

const MILLION = 1_000_000;

function agentBuffer(r) {
  const x = r.results;
  const raw = (label, v) => ({ label, value: v.eventsPerSec });
  const figs = [
    { id: 'agent.intake.fsync', label: `agent buffer durable intake, fsync (${r.params.producers} producers × ${r.params.batch})`, value: x.bufferFsync.eventsPerSec, unit: 'ev/s', budget: 'agent.intake.fsync', reference: raw('raw LevelDB batch put, sync', x.rawSync) },
    // The same append path over the untimed warm-up before it: what a freshly started agent does in its first second.
    ...(x.bufferFsync.warmup?.events > 0 ? [{ id: 'agent.intake.fsync.warmup', label: `agent buffer durable intake, fsync, first ${x.bufferFsync.warmup.events.toLocaleString('en-US')} events (warm-up)`, value: x.bufferFsync.warmup.eventsPerSec, unit: 'ev/s', reference: raw('raw LevelDB batch put, sync, warm-up', x.rawSync.warmup) }] : []),
    { id: 'agent.intake.fsync.vs-nosync', label: 'agent buffer durable intake, fsync — vs no-sync LevelDB', value: x.bufferFsync.eventsPerSec, unit: 'ev/s', reference: raw('raw LevelDB batch put, no sync', x.rawNoSync) },
    { id: 'agent.intake.fsync.single', label: `agent buffer durable intake, fsync (${r.params.producers} producers × 1)`, value: x.bufferFsyncSingle.eventsPerSec, unit: 'ev/s', reference: raw('raw LevelDB batch put, sync', x.rawSync) },
    { id: 'agent.intake.fsync.sink', label: 'agent buffer fsync intake + push-sink read/ack', value: x.bufferFsyncWithSink.eventsPerSec, unit: 'ev/s', reference: raw('raw LevelDB batch put, sync', x.rawSync) },
    { id: 'agent.intake.os', label: 'agent buffer intake, durability os', value: x.bufferOs.eventsPerSec, unit: 'ev/s', reference: raw('raw LevelDB batch put, no sync', x.rawNoSync) },
    { id: 'agent.buffer.rss.load', label: 'agent buffer process RSS under fsync intake', value: x.bufferFsync.rssMaxMB, unit: 'MB', budget: 'agent.rss.load', reference: { label: 'raw LevelDB process RSS', value: x.rawSync.rssMaxMB } },
    { id: 'agent.buffer.rss.idle', label: 'agent buffer process RSS idle (buffer open)', value: x.bufferFsync.idleRssMB, unit: 'MB', budget: 'agent.rss.idle' },
    // VmRSS counts ≈43 MB of the node binary's shared pages and the table files LevelDB maps; RssAnon is what the process itself holds.
    ...(x.bufferFsync.anonMaxMB === undefined
      ? []
      : [
          { id: 'agent.buffer.anon.load', label: 'agent buffer process private memory (RssAnon) under fsync intake', value: x.bufferFsync.anonMaxMB, unit: 'MB', reference: { label: 'raw LevelDB process RssAnon', value: x.rawSync.anonMaxMB } },
          { id: 'agent.buffer.anon.idle', label: 'agent buffer process private memory (RssAnon) idle (buffer open)', value: x.bufferFsync.idleAnonMB, unit: 'MB' },
        ]),
  ];
  const rs = x.restart;
  const full = rs.head >= MILLION;
  figs.push({ id: 'agent.restart', label: `restart with ${rs.head.toLocaleString('en-US')} buffered → first read`, value: rs.openToFirstReadMs, unit: 'ms', ...(full ? { budget: 'agent.restart' } : {}) });
  return figs;
}

function gatewayStore(r) {
  const [raw, pipe] = r.rows;
  return [
    { id: 'gateway.store', label: 'gateway pipeline → LevelDB, synced commits', value: pipe.perSecond, unit: 'ev/s', reference: { label: 'raw LevelDB batch put, sync', value: raw.perSecond } },
    { id: 'gateway.store.cpu', label: 'gateway pipeline CPU per event', value: pipe.cpuMicrosPerEvent, unit: 'µs/ev', reference: { label: 'raw LevelDB batch put, sync', value: raw.cpuMicrosPerEvent } },
  ];
}

/** Rate and p99 of one fan-in level; the DESIGN §7 budgets apply at 1,000 devices. */
function mqttLevel(idBase, clients, gw, mosq, budgeted) {
  const ref = (v) => (typeof v === 'number' ? { reference: { label: `Mosquitto, ${clients} devices`, value: v } } : {});
  return [
    { id: `${idBase}.rate`, label: `MQTT ${clients.toLocaleString('en-US')} devices QoS 1 → gateway, PUBACK rate`, value: gw.perSecond, unit: 'ev/s', ...ref(mosq.perSecond), ...(budgeted ? { budget: 'gateway.mqtt.ratio', budgetOn: 'ratio' } : {}) },
    { id: `${idBase}.p99`, label: `MQTT ${clients.toLocaleString('en-US')} devices QoS 1 → gateway, p99 PUBACK`, value: gw.p99ms, unit: 'ms', ...ref(mosq.p99ms), ...(budgeted ? { budget: 'gateway.mqtt.p99ratio', budgetOn: 'ratio' } : {}) },
  ];
}

function gatewayMqtt(r) {
  const figs = mqttLevel('gateway.mqtt', r.clients, r.gatewayMqtt, r.mosquitto, r.clients === 1000);
  if (typeof r.gatewayHttp?.perSecond === 'number') {
    figs.push({ id: 'gateway.http', label: `gateway HTTP ingest, NDJSON (${r.gatewayHttp.connections} conns × ${r.gatewayHttp.batch})`, value: r.gatewayHttp.perSecond, unit: 'ev/s' });
  }
  return figs;
}

function fanin(r) {
  return r.levels.flatMap((l) => mqttLevel(`fanin.${l.clients}`, l.clients, l.gateway, l.mosquitto, l.clients === 1000));
}

function rsyslogCompare(r) {
  const m = r.meteorzx;
  const s = r.rsyslog;
  const ref = (label, v) => (s === undefined ? {} : { reference: { label, value: v } });
  const n = r.lines.toLocaleString('en-US');
  return [
    { id: 'legacy.rate', label: `log file (${n} lines) → agent → gateway, both fsync`, value: m.eventsPerSecond, unit: 'lines/s', ...ref(`rsyslog imfile → ${r.rsyslogQueue === 'disk' ? 'synced disk' : 'disk-assisted'} queue → TCP → rsyslog`, s?.eventsPerSecond) },
    { id: 'legacy.cpu.sender', label: 'agent CPU per million lines', value: m.processes.agent.cpuSecondsPerMillion, unit: 'CPU s', ...ref('rsyslog sender', s?.processes.sender.cpuSecondsPerMillion) },
    { id: 'legacy.cpu.receiver', label: 'gateway CPU per million lines', value: m.processes.gateway.cpuSecondsPerMillion, unit: 'CPU s', ...ref('rsyslog receiver', s?.processes.receiver.cpuSecondsPerMillion) },
    { id: 'agent.rss.load', label: 'agent process RSS, forwarding a file', value: m.processes.agent.maxRssMB, unit: 'MB', budget: 'agent.rss.load', ...ref('rsyslog sender', s?.processes.sender.maxRssMB) },
    { id: 'agent.rss.idle', label: 'agent process RSS idle (files intake, HTTP push)', value: m.processes.agent.idleRssMB, unit: 'MB', budget: 'agent.rss.idle', ...ref('rsyslog sender', s?.processes.sender.idleRssMB) },
    // VmRSS counts ≈44 MB of the node binary's shared code pages; RssAnon is what the agent itself holds.
    { id: 'agent.anon.load', label: 'agent private memory (RssAnon), forwarding', value: m.processes.agent.maxAnonMB, unit: 'MB', ...ref('rsyslog sender', s?.processes.sender.maxAnonMB) },
    { id: 'agent.anon.idle', label: 'agent private memory (RssAnon), idle', value: m.processes.agent.idleAnonMB, unit: 'MB', ...ref('rsyslog sender', s?.processes.sender.idleAnonMB) },
    { id: 'legacy.rss.receiver', label: 'gateway process RSS, receiving', value: m.processes.gateway.maxRssMB, unit: 'MB', ...ref('rsyslog receiver', s?.processes.receiver.maxRssMB) },
  ];
}

function dedupMemory(r) {
  const n = r.ids.toLocaleString('en-US');
  return [
    { id: 'dedup.rss.10', label: `gateway RSS after 10% of ${n} distinct ids`, value: r.rssAt10MB, unit: 'MB' },
    { id: 'dedup.rss.50', label: `gateway RSS after 50% of ${n} distinct ids`, value: r.rssAt50MB, unit: 'MB' },
    { id: 'dedup.rss.100', label: `gateway RSS after 100% of ${n} distinct ids`, value: r.rssAt100MB, unit: 'MB' },
    { id: 'dedup.slope', label: `gateway RSS growth per id, second half of the window (${r.allocator ?? 'glibc malloc'})`, value: r.bytesPerIdSecondHalf, unit: 'B/id', budget: 'dedup.slope' },
    ...(r.heapBytesPerIdSecondHalf === undefined
      ? []
      : [
          { id: 'dedup.slope.heap', label: '  of which JS heap (where a cache of ids would be)', value: r.heapBytesPerIdSecondHalf, unit: 'B/id' },
          { id: 'dedup.slope.native', label: '  of which native memory outside V8 (LevelDB, allocator)', value: r.nativeBytesPerIdSecondHalf, unit: 'B/id' },
        ]),
    { id: 'dedup.rate', label: 'pipeline ingest of small distinct ids (in-process)', value: r.idsPerSecond, unit: 'ids/s' },
  ];
}

/** agent-e2e: one row per case; the `*-fake` cases (agent → instant-ack sink) are the reference for the agent's share. */
function agentE2e(r) {
  const row = (c) => r.rows.find((x) => x.case === c && x.runs > 0);
  const figs = [];
  for (const [proto, budget] of [['http', 'e2e.http'], ['mqtt', 'e2e.mqtt']]) {
    const gw = row(`${proto}-gateway`);
    if (gw === undefined) continue;
    const fake = row(`${proto}-fake`);
    const fakeRef = (v) => (fake === undefined ? {} : { reference: { label: proto === 'http' ? 'agent → instant-ack HTTP sink' : 'agent → Mosquitto', value: v(fake) } });
    const P = proto.toUpperCase();
    figs.push(
      { id: `e2e.${proto}`, label: `agent → gateway over ${P}, fsync both sides`, value: gw.e2ePerSec, unit: 'ev/s', budget, ...fakeRef((x) => x.e2ePerSec) },
      { id: `e2e.${proto}.p99`, label: `agent → gateway over ${P}, p99 intake ack → stored`, value: gw.p99ms, unit: 'ms' },
      { id: `e2e.${proto}.cpu.agent`, label: `agent CPU per million events (${P} push)`, value: gw.agentCpuSecPerM, unit: 'CPU s', ...fakeRef((x) => x.agentCpuSecPerM) },
      { id: `e2e.${proto}.cpu.gateway`, label: `gateway CPU per million events (${P} ingest)`, value: gw.sinkCpuSecPerM, unit: 'CPU s' },
      { id: `e2e.${proto}.rss.load`, label: `agent process RSS under load (${P} push)`, value: gw.agentMaxRssMB, unit: 'MB', budget: 'agent.rss.load' },
    );
    if (proto === 'http') figs.push({ id: 'e2e.rss.idle', label: 'agent process RSS idle (HTTP intake + push)', value: gw.agentIdleRssMB, unit: 'MB', budget: 'agent.rss.idle' });
    // Private memory (RssAnon): VmRSS less the node binary's shared pages and the table files LevelDB maps.
    if (gw.agentMaxAnonMB !== undefined) figs.push({ id: `e2e.${proto}.anon.load`, label: `agent private memory (RssAnon) under load (${P} push)`, value: gw.agentMaxAnonMB, unit: 'MB' });
    if (proto === 'http' && gw.agentIdleAnonMB !== undefined) figs.push({ id: 'e2e.anon.idle', label: 'agent private memory (RssAnon) idle (HTTP intake + push)', value: gw.agentIdleAnonMB, unit: 'MB' });
  }
  return figs;
}

export const EXTRACTORS = {
  'agent-e2e': agentE2e,
  'agent-buffer': agentBuffer,
  'gateway-store': gatewayStore,
  'gateway-mqtt': gatewayMqtt,
  fanin,
  'rsyslog-compare': rsyslogCompare,
  'dedup-memory': dedupMemory,
};

/** The figures of one run of bench `name`; throws when the result lacks what the table needs. */
export function extractFigures(name, result) {
  const fn = EXTRACTORS[name];
  if (fn !== undefined) return fn(result);
  if (Array.isArray(result?.figures)) return result.figures;
  return [];
}
