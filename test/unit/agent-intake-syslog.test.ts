import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect as connectTls } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tlsServerOptions } from '../../common/tls-server.js';
import { makePki, type TestPki } from '../integration/test-pki.js';
import { DEFAULT_LIMITS, verifyChain, type AuditEvent, type ChainedEvent } from '../../protocols/index.js';
import { LevelBuffer } from '../../agent/buffer/index.js';
import type { AgentBuffer } from '../../agent/buffer/types.js';
import { AgentErrors } from '../../agent/errors.js';
import type { IntakeMeter } from '../../agent/intake/intake-meter.js';
import { SyslogIntake, type SyslogIntakeOptions } from '../../agent/intake/syslog/syslog-intake.js';
import { SyslogSink } from '../../agent/intake/syslog/syslog-sink.js';
import { TcpListener } from '../../agent/intake/syslog/tcp-listener.js';
import { BlockableBuffer } from './agent-fake-buffer.js';

const run = promisify(execFile);

let dir: string;
let buffer: LevelBuffer;
let intake: SyslogIntake | undefined;
let meter: IntakeMeter & { drops: Record<string, number>; blockedStates: boolean[]; in: number };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meteorzx-syslog-'));
  buffer = new LevelBuffer({ dataDir: dir, id: 'edge-1', durability: 'os', commitIntervalMs: 1 });
  await buffer.open();
  const drops: Record<string, number> = {};
  meter = {
    drops,
    blockedStates: [],
    in: 0,
    eventsIn(n) {
      this.in += n;
    },
    invalid: () => undefined,
    dropped: (reason, n = 1) => void (drops[reason] = (drops[reason] ?? 0) + n),
    error: () => undefined,
    blocked(on) {
      this.blockedStates.push(on);
    },
    timeAppend: (_n, fn) => fn(),
  };
});

afterEach(async () => {
  await intake?.close();
  intake = undefined;
  await buffer.close();
  await rm(dir, { recursive: true, force: true });
});

async function start(over: Partial<SyslogIntakeOptions> = {}, buf: AgentBuffer = buffer): Promise<{ udp: number; tcp: number }> {
  intake = new SyslogIntake({
    listen: [
      { protocol: 'udp', host: '127.0.0.1', port: 0 },
      { protocol: 'tcp', host: '127.0.0.1', port: 0 },
    ],
    buffer: buf,
    limits: DEFAULT_LIMITS,
    maxMessageBytes: 8192,
    maxConnections: 16,
    meter,
    ...over,
  });
  await intake.start();
  const [udp, tcp] = intake.addresses();
  return { udp: udp?.port ?? 0, tcp: tcp?.port ?? 0 };
}

async function events(n: number): Promise<ChainedEvent[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const got = await buffer.read(0, 100_000);
    if (got.length >= n) return got;
    if (Date.now() > deadline) throw new Error(`expected ${n} events, have ${got.length}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** util-linux logger: a syslog sender we did not write. */
function logger(port: number, args: string[]): Promise<unknown> {
  return run('logger', ['-n', '127.0.0.1', '-P', String(port), ...args]);
}

describe('SyslogIntake with util-linux logger', () => {
  it('takes RFC 5424 over UDP with structured data, msgid, pid and the peer', async () => {
    const { udp } = await start();
    await logger(udp, ['--rfc5424', '-d', '-t', 'myapp', '-i', '--msgid', 'ID47', '-p', 'auth.warning', '--sd-id', 'ex@32473', '--sd-param', 'iut="3"', 'hello 5424 udp']);
    const [e] = await events(1);
    expect(e).toMatchObject({
      type: 'syslog.auth.warning',
      source: 'edge-1',
      data: { facility: 'auth', severity: 'warning', format: 'rfc5424', transport: 'udp', app: 'myapp', msgid: 'ID47', message: 'hello 5424 udp' },
    });
    expect(e?.data?.structuredData).toMatchObject({ 'ex@32473': { iut: '3' }, timeQuality: { tzKnown: '1' } });
    expect(String(e?.data?.peer)).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(e?.data?.procid).toMatch(/^\d+$/);
    expect(Math.abs(Date.parse(String(e?.time)) - Date.now())).toBeLessThan(60_000);
  });

  it('takes RFC 5424 over TCP, newline and octet-counted framing', async () => {
    const { tcp } = await start();
    await logger(tcp, ['--rfc5424', '-T', '-t', 'a', 'newline framed']);
    await logger(tcp, ['--rfc5424', '-T', '--octet-count', '-t', 'b', 'octet counted']);
    const got = await events(2);
    expect(got.map((e) => [e.data?.app, e.data?.message, e.data?.transport])).toEqual([
      ['a', 'newline framed', 'tcp'],
      ['b', 'octet counted', 'tcp'],
    ]);
  });

  it('takes RFC 3164 over UDP and TCP, with host, tag and a time in the current year', async () => {
    const { udp, tcp } = await start();
    await logger(udp, ['--rfc3164', '-d', '-t', 'legacy', '-p', 'local3.err', 'bsd over udp']);
    await logger(tcp, ['--rfc3164', '-T', '-t', 'legacy', 'bsd over tcp']);
    const got = await events(2);
    expect(got[0]).toMatchObject({ type: 'syslog.local3.err', data: { format: 'rfc3164', app: 'legacy', message: 'bsd over udp', transport: 'udp' } });
    expect(got[1]).toMatchObject({ type: 'syslog.user.notice', data: { format: 'rfc3164', message: 'bsd over tcp', transport: 'tcp' } });
    expect(typeof got[0]?.data?.host).toBe('string');
    expect(new Date(String(got[0]?.time)).getFullYear()).toBe(new Date().getFullYear());
  });

  it('uses the configured type instead of syslog.<facility>.<severity>', async () => {
    const { udp } = await start({ type: 'host.syslog' });
    await logger(udp, ['--rfc5424', '-d', 'x']);
    expect((await events(1))[0]?.type).toBe('host.syslog');
  });
});

describe('SyslogIntake structured data', () => {
  it('stores an SD element with the SD-ID __proto__ (canonical line, hash chain and read back)', async () => {
    const { udp } = await start();
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.send('<13>1 - - - - - [__proto__ a="b"][x y="1"] sd proto', udp, '127.0.0.1', () => r()));
    sock.close();
    const [e] = await events(1);
    expect(e?.data?.message).toBe('sd proto');
    expect(JSON.stringify(e?.data?.structuredData)).toBe('{"__proto__":{"a":"b"},"x":{"y":"1"}}');
    const [line] = await buffer.readLines(0, 1);
    expect(line?.line).toContain('"structuredData":{"__proto__":{"a":"b"},"x":{"y":"1"}}');
    expect(verifyChain(await buffer.read(0, 10)).ok).toBe(true);
  });
});

describe('SyslogIntake limits', () => {
  it('drops and counts an oversize datagram, keeps its neighbours', async () => {
    const { udp } = await start({ maxMessageBytes: 1024 });
    const sock = createSocket('udp4');
    const send = (text: string) => new Promise<void>((r) => sock.send(text, udp, '127.0.0.1', () => r()));
    await send('<13>1 - - - - - - small one');
    await send(`<13>1 - - - - - - ${'x'.repeat(5000)}`);
    await send('<13>1 - - - - - - small two');
    sock.close();
    const got = await events(2);
    expect(got.map((e) => e.data?.message)).toEqual(['small one', 'small two']);
    expect(meter.drops).toEqual({ oversize: 1 });
  });

  it('does not count the LF or CRLF ending a datagram against maxMessageBytes, as on TCP', async () => {
    const { udp } = await start({ maxMessageBytes: 1024 });
    const sock = createSocket('udp4');
    const send = (text: string) => new Promise<void>((r) => sock.send(text, udp, '127.0.0.1', () => r()));
    const head = '<13>1 - - - - - - ';
    const exact = `${head}${'y'.repeat(1024 - head.length)}`;
    await send(`${exact}\n`);
    await send(`${exact}\r\n`);
    await send(`${exact}z\n`);
    await send('<13>1 - - - - - - after');
    sock.close();
    const got = await events(3);
    // Before: the first two dropped as oversize (1,025 and 1,026 bytes with their line ends).
    expect(got.map((e) => String(e.data?.message).length)).toEqual([1024 - head.length, 1024 - head.length, 'after'.length]);
    expect(meter.drops).toEqual({ oversize: 1 });
  });

  it('refuses connections past maxConnections and counts them', async () => {
    const { tcp } = await start({ maxConnections: 2 });
    const open = () =>
      new Promise<Socket>((resolve) => {
        const s = connect(tcp, '127.0.0.1', () => resolve(s));
        s.on('error', () => undefined);
      });
    const a = await open();
    const b = await open();
    const c = await open();
    await new Promise<void>((r) => c.once('close', () => r()));
    expect(meter.drops['connection-refused']).toBe(1);
    a.write('<13>1 - - - - - - from a\n');
    b.write('<13>1 - - - - - - from b\n');
    expect((await events(2)).map((e) => e.data?.message).sort()).toEqual(['from a', 'from b']);
    a.destroy();
    b.destroy();
  });
});

describe('SyslogIntake backpressure', () => {
  function gated(): { buf: AgentBuffer; release: () => void; attempts: () => number } {
    let full = true;
    let attempts = 0;
    let release: () => void = () => undefined;
    const space = new Promise<void>((r) => (release = r));
    const buf: AgentBuffer = Object.assign(Object.create(buffer) as AgentBuffer, {
      append: (evs: readonly AuditEvent[]) => {
        attempts += 1;
        return full ? Promise.reject(AgentErrors.METEORZX_BUFFER_FULL('full')) : buffer.append(evs);
      },
      waitForSpace: () => (full ? space : Promise.resolve()),
    });
    return {
      buf,
      release: () => {
        full = false;
        release();
      },
      attempts: () => attempts,
    };
  }

  it('TCP: stops reading the socket while the buffer is full, then takes everything', async () => {
    const g = gated();
    const { tcp } = await start({}, g.buf);
    const s = connect(tcp, '127.0.0.1');
    s.on('error', () => undefined);
    const line = `<13>1 - - - - - - ${'y'.repeat(900)}\n`;
    let written = 0;
    // Write until the kernel buffers are full and the socket refuses more: the intake is not reading.
    while (s.write(line)) written += 1;
    written += 1;
    await new Promise((r) => setTimeout(r, 200));
    expect(g.attempts()).toBe(1);
    expect(meter.blockedStates).toEqual([true]);
    g.release();
    const got = await events(written);
    expect(got.length).toBe(written);
    expect(meter.blockedStates).toEqual([true, false]);
    s.destroy();
  });

  it('TCP: a connection paused while the buffer is full is not closed as idle (the kernel holds its data)', async () => {
    const buf = new BlockableBuffer();
    buf.full = true;
    const sink = new SyslogSink({ limits: DEFAULT_LIMITS, maxMessageBytes: 8192, meter });
    const listener = new TcpListener({ host: '127.0.0.1', port: 0, buffer: buf, sink, maxConnections: 4, idleTimeoutMs: 300 });
    const { port } = await listener.start();
    const s = connect(port, '127.0.0.1');
    try {
      s.on('error', () => undefined);
      let closed = false;
      s.on('close', () => (closed = true));
      const write = (text: string) => new Promise<void>((resolve, reject) => s.write(text, (err) => (err ? reject(err) : resolve())));
      await write('<13>1 - - - - - - first\n');
      await new Promise((r) => setTimeout(r, 100));
      // Accepted by the kernel while the intake is paused: the sender has done its part.
      for (let i = 0; i < 100; i++) await write(`<13>1 - - - - - - more ${i}\n`);
      await new Promise((r) => setTimeout(r, 900));
      buf.makeSpace();
      const deadline = Date.now() + 2000;
      while (buf.events.length < 101 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect({ buffered: buf.events.length, closed }).toEqual({ buffered: 101, closed: false });
    } finally {
      s.destroy();
      await listener.close();
    }
  });

  it('TCP: an idle connection closed by the agent keeps its last message, sent without a final LF', async () => {
    const buf = new BlockableBuffer();
    const sink = new SyslogSink({ limits: DEFAULT_LIMITS, maxMessageBytes: 8192, meter });
    const listener = new TcpListener({ host: '127.0.0.1', port: 0, buffer: buf, sink, maxConnections: 4, idleTimeoutMs: 200 });
    const { port } = await listener.start();
    const s = connect(port, '127.0.0.1');
    try {
      s.on('error', () => undefined);
      const closed = new Promise((r) => s.once('close', r));
      s.write('<13>1 - - - - - - first\n<13>1 - - - - - - last, no LF');
      await closed;
      const deadline = Date.now() + 2000;
      while (buf.events.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(buf.events.map((e) => e.data?.message)).toEqual(['first', 'last, no LF']);
    } finally {
      s.destroy();
      await listener.close();
    }
  });

  it('UDP: drops and counts while the buffer is full (a datagram cannot be slowed down)', async () => {
    const g = gated();
    const { udp } = await start({}, g.buf);
    const sock = createSocket('udp4');
    const send = (text: string) => new Promise<void>((r) => sock.send(text, udp, '127.0.0.1', () => r()));
    await send('<13>1 - - - - - - first');
    const deadline = Date.now() + 5000;
    while (!meter.drops['buffer-full'] && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await send('<13>1 - - - - - - while full');
    await new Promise((r) => setTimeout(r, 100));
    expect(meter.drops['buffer-full']).toBe(2);
    g.release();
    await new Promise((r) => setTimeout(r, 50));
    await send('<13>1 - - - - - - after');
    const got = await events(1);
    expect(got.map((e) => e.data?.message)).toEqual(['after']);
    sock.close();
  });
});

describe('SyslogIntake over TLS with hostile clients', () => {
  let pki: TestPki;
  let pkiDir: string;
  beforeAll(async () => {
    pkiDir = await mkdtemp(join(tmpdir(), 'meteorzx-syslog-pki-'));
    pki = await makePki(pkiDir);
    return () => rm(pkiDir, { recursive: true, force: true });
  }, 30_000);

  /** A tls:// listener only, allowing one connection at once. */
  async function startTls(handshakeTimeout?: number): Promise<number> {
    const tls = await tlsServerOptions({ cert: pki.cert, key: pki.key, requestClientCert: false });
    intake = new SyslogIntake({
      listen: [{ protocol: 'tls', host: '127.0.0.1', port: 0 }],
      tls: handshakeTimeout === undefined ? tls : { ...tls, handshakeTimeout },
      buffer,
      limits: DEFAULT_LIMITS,
      maxMessageBytes: 8192,
      maxConnections: 1,
      meter,
    });
    await intake.start();
    return intake.addresses()[0]?.port ?? 0;
  }

  /** A TCP connection that never starts its TLS handshake; resolves once connected. */
  function silent(port: number): Promise<{ socket: Socket; closed: Promise<void> }> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve({ socket, closed: new Promise<void>((r) => socket.once('close', () => r())) }));
      socket.on('error', reject);
    });
  }

  it('closes a connection that never completes its handshake, freeing its slot for a real sender', async () => {
    const port = await startTls(300);
    const stalled = await silent(port);
    // It used to stay open for ever: Node reports the handshake timeout and leaves the socket to its server.
    await stalled.closed;
    const ca = await readFile(pki.ca);
    await new Promise<void>((resolve, reject) => {
      const client = connectTls({ port, host: '127.0.0.1', ca }, () => client.end('<13>1 - - - - - - after the stalled one\n', () => resolve()));
      client.on('error', reject);
    });
    expect((await events(1)).map((e) => e.data?.message)).toEqual(['after the stalled one']);
  }, 10_000);

  it('close() does not wait for a connection still in its handshake', async () => {
    const port = await startTls();
    const stalled = await silent(port);
    await new Promise((r) => setTimeout(r, 100)); // let the listener take it
    // It used to wait for the client to leave: for ever, as above.
    await intake?.close();
    intake = undefined;
    await stalled.closed;
  }, 5_000);
});
