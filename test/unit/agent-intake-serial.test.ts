import pino from 'pino';
import { SerialPortMock } from 'serialport';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../protocols/index.js';
import { parseAgentConfig } from '../../agent/config.js';
import { planIntakes } from '../../agent/intake/create-intakes.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { SerialIntake, type SerialIntakeOptions } from '../../agent/intake/serial/serial-intake.js';
import type { SerialPortLike } from '../../agent/intake/serial/serial-port.js';
import { BlockableBuffer, FakeBuffer } from './agent-fake-buffer.js';

// serialport (CommonJS) and an ESM import of @serialport/binding-mock are two module instances: use the one SerialPortMock holds.
const MockBinding = SerialPortMock.binding;

const intakes: SerialIntake[] = [];
afterEach(async () => {
  await Promise.all(intakes.splice(0).map((i) => i.close()));
  MockBinding.reset();
});

function until(probe: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (probe()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

function setup(options: Partial<SerialIntakeOptions> & { path: string }, buffer = new FakeBuffer()) {
  const ports: SerialPortMock[] = [];
  const metrics = new AgentMetrics({ buffer: () => buffer.state(), push: () => 'disabled' }, { processMetrics: false });
  const intake = new SerialIntake({
    baudRate: 9600,
    format: 'json',
    limits: DEFAULT_LIMITS,
    buffer,
    metrics,
    reopen: { initialMs: 10, maxMs: 20 },
    random: () => 1,
    createPort: ({ path, baudRate }) => {
      const port = new SerialPortMock({ path, baudRate, autoOpen: false });
      ports.push(port);
      return port as unknown as SerialPortLike;
    },
    ...options,
  });
  intakes.push(intake);
  const current = () => {
    const port = ports.at(-1);
    if (port?.port === undefined) throw new Error('no open port');
    return port;
  };
  const send = (data: string | Buffer) => current().port?.emitData(data);
  return { intake, buffer, metrics, ports, current, send };
}

const metricValue = async (metrics: AgentMetrics, name: string, labels: Record<string, string>) => {
  const metric = await metrics.registry.getSingleMetric(name)?.get();
  const hit = metric?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return hit?.value ?? 0;
};

describe('serial intake (binding-mock)', () => {
  it('buffers JSON records, turns a bad one into a flagged error event, and counts both', async () => {
    MockBinding.createPort('/dev/ttyMOCK0', { echo: false, record: false });
    const { intake, buffer, metrics, send } = setup({ path: '/dev/ttyMOCK0', source: 'meter-7' });
    await intake.start();
    expect(intake.isOpen).toBe(true);
    send('{"type":"door.open"}\r\n{"type":"door.close","source":"door-2"}\n{"type": oops}\n\n');
    await until(() => buffer.events.length === 3, '3 events buffered');
    expect(buffer.events.map((e) => [e.type, e.source])).toEqual([
      ['door.open', 'meter-7'],
      ['door.close', 'door-2'],
      ['meteorzx.intake.error', 'meter-7'],
    ]);
    expect(buffer.events[2]?.data).toMatchObject({ intake: 'serial', port: '/dev/ttyMOCK0', raw: '{"type": oops}' });
    expect(await metricValue(metrics, 'meteorzx_agent_events_in_total', { intake: 'serial' })).toBe(3);
    expect(await metricValue(metrics, 'meteorzx_agent_events_invalid_total', { intake: 'serial' })).toBe(1);
  });

  it('wraps line records with the configured type, delimiter and port', async () => {
    MockBinding.createPort('/dev/ttyMOCK1', { echo: false, record: false });
    const { intake, buffer, send } = setup({ path: '/dev/ttyMOCK1', format: 'line', type: 'plc.status', delimiter: ';' });
    await intake.start();
    send('RUN;STOP;par');
    await until(() => buffer.events.length === 2, '2 events');
    expect(buffer.events.map((e) => [e.type, e.data])).toEqual([
      ['plc.status', { line: 'RUN', port: '/dev/ttyMOCK1' }],
      ['plc.status', { line: 'STOP', port: '/dev/ttyMOCK1' }],
    ]);
    // The partial last record is not lost on close: it is buffered as what it is.
    await intake.close();
    expect(buffer.events.at(-1)?.data).toEqual({ line: 'par', port: '/dev/ttyMOCK1' });
    await intake.close();
  });

  it('retries a device that is not there yet, and reopens one that vanishes', async () => {
    const { intake, buffer, ports, metrics, current, send } = setup({ path: '/dev/ttyMOCK2' });
    await intake.start();
    expect(intake.isOpen).toBe(false);
    await until(() => ports.length >= 2, 'a second open attempt');
    MockBinding.createPort('/dev/ttyMOCK2', { echo: false, record: false });
    await until(() => intake.isOpen, 'port open after the device appeared');
    send('{"type":"a"}\n');
    await until(() => buffer.events.length === 1, 'first event');

    const before = ports.length;
    // The device goes away mid-record: the partial record is flushed, the port reopened.
    send('{"type":"b"');
    await new Promise((r) => setTimeout(r, 20));
    await new Promise<void>((r) => current().close(() => r()));
    await until(() => ports.length > before && intake.isOpen, 'reopened port');
    expect(buffer.events[1]).toMatchObject({ type: 'meteorzx.intake.error' });
    send('{"type":"c"}\n');
    await until(() => buffer.events.length === 3, 'event after reopen');
    expect(buffer.events[2]?.type).toBe('c');
    expect(await metricValue(metrics, 'meteorzx_agent_intake_errors_total', { intake: 'serial', kind: 'open' })).toBeGreaterThanOrEqual(1);
    expect(await metricValue(metrics, 'meteorzx_agent_intake_errors_total', { intake: 'serial', kind: 'disconnect' })).toBe(1);
  });

  it('pauses the port while the buffer is full and resumes after waitForSpace, losing nothing', async () => {
    MockBinding.createPort('/dev/ttyMOCK3', { echo: false, record: false });
    const buffer = new BlockableBuffer();
    const { intake, metrics, current, send } = setup({ path: '/dev/ttyMOCK3' }, buffer);
    await intake.start();
    buffer.full = true;
    send('{"type":"t1"}\n');
    await until(() => intake.isBlocked, 'blocked');
    expect(current().isPaused()).toBe(true);
    expect(await metricValue(metrics, 'meteorzx_agent_intake_blocked', { intake: 'serial' })).toBe(1);
    send('{"type":"t2"}\n');
    await new Promise((r) => setTimeout(r, 30));
    expect(buffer.events).toHaveLength(0);

    buffer.makeSpace();
    await until(() => buffer.events.length === 2, 'both events after space');
    expect(buffer.events.map((e) => e.type)).toEqual(['t1', 't2']);
    expect(intake.isBlocked).toBe(false);
    expect(current().isPaused()).toBe(false);
    expect(await metricValue(metrics, 'meteorzx_agent_intake_blocked', { intake: 'serial' })).toBe(0);
  });

  it('one blocked gauge for every port: 1 while any port waits for space', async () => {
    MockBinding.createPort('/dev/ttyMOCK6', { echo: false, record: false });
    MockBinding.createPort('/dev/ttyMOCK7', { echo: false, record: false });
    // Two buffers stand in for one, so that the ports wait and resume apart.
    const [bufA, bufB] = [new BlockableBuffer(), new BlockableBuffer()];
    const a = setup({ path: '/dev/ttyMOCK6' }, bufA);
    const metrics = a.metrics;
    const b = setup({ path: '/dev/ttyMOCK7', metrics }, bufB);
    await Promise.all([a.intake.start(), b.intake.start()]);
    bufA.full = true;
    bufB.full = true;
    a.send('{"type":"a1"}\n');
    b.send('{"type":"b1"}\n');
    await until(() => a.intake.isBlocked && b.intake.isBlocked, 'both blocked');
    bufA.makeSpace();
    await until(() => bufA.events.length === 1 && !a.intake.isBlocked, 'port A resumed');
    // Before: 0 here, port B still waiting.
    expect(await metricValue(metrics, 'meteorzx_agent_intake_blocked', { intake: 'serial' })).toBe(1);
    bufB.makeSpace();
    await until(() => bufB.events.length === 1 && !b.intake.isBlocked, 'port B resumed');
    expect(await metricValue(metrics, 'meteorzx_agent_intake_blocked', { intake: 'serial' })).toBe(0);
  });

  it('cuts a record that never ends: memory stays bounded and the head is buffered flagged with the length seen', async () => {
    MockBinding.createPort('/dev/ttyMOCK4', { echo: false, record: false });
    const { intake, buffer, metrics, send } = setup({ path: '/dev/ttyMOCK4', format: 'line', maxLineBytes: 1024, truncatedFlushMs: 50 });
    await intake.start();
    const chunk = Buffer.alloc(64 * 1024, 0x78);
    for (let i = 0; i < 32; i += 1) send(chunk); // 2 MiB, no delimiter
    await until(() => buffer.events.length === 1, 'the flagged head');
    const data = buffer.events[0]?.data as Record<string, unknown>;
    expect(data).toMatchObject({ truncated: true, originalBytes: 2 * 1024 * 1024, complete: false });
    expect((data.line as string).length).toBe(1024);
    // The tail ends; the next record is read normally.
    send('xxxx\nafter\n');
    await until(() => buffer.events.length === 2, 'the next record');
    expect(buffer.events[1]?.data).toMatchObject({ line: 'after' });
    expect(await metricValue(metrics, 'meteorzx_agent_intake_dropped_total', { intake: 'serial', reason: 'truncated' })).toBe(1);
  });

  it('counts records still waiting for space at close as dropped, and close does not hang', async () => {
    MockBinding.createPort('/dev/ttyMOCK5', { echo: false, record: false });
    const buffer = new BlockableBuffer();
    const { intake, metrics, send } = setup({ path: '/dev/ttyMOCK5' }, buffer);
    await intake.start();
    buffer.full = true;
    send('{"type":"t1"}\n{"type":"t2"}\n');
    await until(() => intake.isBlocked, 'blocked');
    await intake.close();
    expect(buffer.events).toHaveLength(0);
    expect(await metricValue(metrics, 'meteorzx_agent_intake_dropped_total', { intake: 'serial', reason: 'shutdown' })).toBe(2);
  });
});

describe('serial intake built from the agent config', () => {
  it('names its port once per log line (a second "path" key breaks strict JSON readers)', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const config = parseAgentConfig({ id: 'a', intake: { serial: [{ path: '/nonexistent/meteorzx-tty' }] } });
    const [plan] = planIntakes({ config, buffer: new FakeBuffer(), logger });
    const intake = (await plan?.create()) as SerialIntake;
    intakes.push(intake);
    await intake.start();
    await until(() => lines.length > 0, 'a log line');
    expect(lines[0]).toContain('serial port cannot be opened');
    expect(lines[0]?.match(/"path":/g)).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ intake: 'serial', path: '/nonexistent/meteorzx-tty' });
  });
});
