import type { Logger } from 'pino';
import type { AuditEvent, Limits } from '../../../protocols/index.js';
import type { AgentBuffer } from '../../buffer/types.js';
import type { AgentMetrics } from '../../metrics.js';
import { Backoff } from '../../push/backoff.js';
import { durableAppend } from '../durable-append.js';
import { createIntakeMeter, type IntakeMeter } from '../intake-meter.js';
import type { Intake } from '../types.js';
import { LineSplitter, type SplitRecord } from './line-splitter.js';
import { recordToEvent, type RecordContext } from './serial-records.js';
import { loadSerialPortFactory, type SerialPortFactory, type SerialPortLike } from './serial-port.js';

export interface SerialIntakeOptions {
  path: string;
  baudRate: number;
  /** Ends one record. Default "\n" (then a trailing "\r" is stripped too). */
  delimiter?: string;
  format: 'json' | 'line';
  /** Event type of `line` records. Default `serial.line`. */
  type?: string;
  /** Source of line records and of JSON events without one. Default: the agent id (set by the buffer). */
  source?: string;
  /** Bytes of one record before it is cut and flagged. Default: limits.maxEventBytes. */
  maxLineBytes?: number;
  limits: Limits;
  buffer: AgentBuffer;
  metrics?: AgentMetrics;
  logger?: Logger;
  /** Makes ports; default: the real `serialport` bindings. Tests pass SerialPortMock. */
  createPort?: SerialPortFactory;
  /** Reopen backoff after a failed open or a vanished device, ms (full jitter). Default 500 ms → 30 s. */
  reopen?: { initialMs: number; maxMs: number };
  random?: () => number;
  /** How long an overlong record waits for more bytes before its head is buffered anyway, ms. Default 1000. */
  truncatedFlushMs?: number;
  /** Bytes of records read but not yet buffered before the port is paused. Default 1 MiB. */
  maxPendingBytes?: number;
}

interface Pending {
  event: AuditEvent;
  bytes: number;
}

/**
 * One serial port as an intake (issue 6). Records are split on the
 * delimiter with a bounded splitter, turned into events (`line` wraps the
 * text, `json` parses it; bad input becomes a flagged error event) and
 * appended in batches: whatever arrives while one append is in flight goes
 * into the next, sharing its group commit.
 *
 * A serial line cannot be acknowledged or replayed, so "ack after durable"
 * means: nothing is read faster than it is made durable. While the buffer is
 * full (policy block) or too many records wait, the port is paused: the
 * kernel's tty buffer fills and flow control (or the device's own buffer)
 * holds the rest. A device that vanishes is reopened with backoff.
 */
export class SerialIntake implements Intake {
  readonly name = 'serial';
  private factory: SerialPortFactory | undefined;
  private port: SerialPortLike | undefined;
  private portPaused = false;
  private readonly splitter: LineSplitter;
  private readonly context: RecordContext;
  private readonly backoff: Backoff;
  private readonly meter: IntakeMeter;
  private readonly abort = new AbortController();
  private readonly log: Logger | undefined;
  private queue: Pending[] = [];
  private queueBytes = 0;
  private blocked = false;
  private pumping: Promise<void> | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private failedOpens = 0;
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(private readonly options: SerialIntakeOptions) {
    const delimiter = options.delimiter ?? '\n';
    this.splitter = new LineSplitter(delimiter, options.maxLineBytes ?? options.limits.maxEventBytes, { crlf: delimiter === '\n' });
    this.context = {
      format: options.format,
      type: options.type ?? 'serial.line',
      source: options.source,
      port: options.path,
      stripCr: delimiter === '\n',
      limits: options.limits,
    };
    this.backoff = new Backoff({ ...(options.reopen ?? { initialMs: 500, maxMs: 30_000 }), ...(options.random ? { random: options.random } : {}) });
    // The meter is shared by every serial port (one `intake` label); it counts the ports waiting for space.
    const meter = createIntakeMeter(options.metrics, this.name);
    this.meter = { ...meter, blocked: (on) => this.setBlocked(on, meter) };
    // Every line of this port names it (the agent passes a logger without the path: a second binding would repeat the key).
    this.log = options.logger?.child({ path: options.path });
  }

  /** Loads the bindings and makes the first open attempt; a missing device is retried, not fatal (it may be plugged in later). */
  async start(): Promise<void> {
    try {
      this.factory = this.options.createPort ?? (await loadSerialPortFactory());
    } catch (err) {
      throw new Error(`intake.serial ${this.options.path}: cannot load the serialport bindings: ${(err as Error).message}`, { cause: err });
    }
    await this.openPort();
  }

  describe(): Record<string, unknown> {
    return { intake: this.name, path: this.options.path, baudRate: this.options.baudRate, format: this.options.format, open: this.port !== undefined };
  }

  /** True while the port is open (for tests and status). */
  get isOpen(): boolean {
    return this.port !== undefined;
  }

  /** True while reading is paused because the buffer is full. */
  get isBlocked(): boolean {
    return this.blocked;
  }

  /**
   * Stops reading, buffers what was already read (a partial last record
   * included), and waits for those appends; records still waiting for space
   * when it is called are counted as dropped. Idempotent.
   */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    clearTimeout(this.reopenTimer);
    clearTimeout(this.idleTimer);
    const port = this.port;
    if (port !== undefined) await this.release(port);
    // What was read is still appended; only a wait for space (which may never end) is cut short.
    if (this.blocked) this.abort.abort();
    await this.pumping;
  }

  private openPort(): Promise<void> {
    const factory = this.factory;
    if (this.closing || factory === undefined) return Promise.resolve();
    let port: SerialPortLike;
    try {
      port = factory({ path: this.options.path, baudRate: this.options.baudRate });
    } catch (err) {
      this.openFailed(err as Error);
      return Promise.resolve();
    }
    // Before open: a stream error with no listener would crash the agent.
    port.on('error', (err) => this.log?.warn({ err: err.message }, 'serial port error'));
    return new Promise((resolve) => {
      port.open((err) => {
        if (err) {
          port.removeAllListeners();
          this.openFailed(err);
        } else if (this.closing) {
          port.close();
        } else {
          this.opened(port);
        }
        resolve();
      });
    });
  }

  private opened(port: SerialPortLike): void {
    this.port = port;
    this.portPaused = false;
    this.backoff.reset();
    this.failedOpens = 0;
    port.on('data', (chunk) => this.onData(chunk));
    port.on('close', (err) => this.onPortClosed(port, err ?? undefined));
    this.applyFlow();
    this.log?.info({ baudRate: this.options.baudRate, format: this.options.format }, 'serial port open');
  }

  private openFailed(err: Error): void {
    this.failedOpens += 1;
    this.meter.error('open');
    // Warn on the first failures and then at powers of two: a device unplugged for a day must not flood the log.
    const n = this.failedOpens;
    const level = n <= 3 || (n & (n - 1)) === 0 ? 'warn' : 'debug';
    this.log?.[level]({ err: err.message, attempts: n }, 'serial port cannot be opened; retrying');
    this.scheduleReopen();
  }

  private onPortClosed(port: SerialPortLike, err: Error | undefined): void {
    if (port !== this.port) return;
    this.port = undefined;
    clearTimeout(this.idleTimer);
    port.removeAllListeners();
    // Swallow late errors of the dead stream.
    port.on('error', () => undefined);
    this.endOfStream();
    if (this.closing) return;
    this.meter.error('disconnect');
    this.log?.warn({ err: err?.message }, 'serial port closed (device gone?); reopening');
    this.scheduleReopen();
  }

  private scheduleReopen(): void {
    if (this.closing) return;
    const delay = this.backoff.next();
    this.reopenTimer = setTimeout(() => void this.openPort(), delay);
    this.reopenTimer.unref();
  }

  /** Closes a port we are leaving; what it had read but not yet split is flushed as the last record. */
  private async release(port: SerialPortLike): Promise<void> {
    this.port = undefined;
    port.removeAllListeners();
    port.on('error', () => undefined);
    await new Promise<void>((resolve) => port.close(() => resolve()));
    this.endOfStream();
  }

  private endOfStream(): void {
    const last = this.splitter.end();
    if (last !== undefined) this.take(last);
  }

  private onData(chunk: Buffer): void {
    for (const record of this.splitter.push(chunk)) this.take(record);
    clearTimeout(this.idleTimer);
    if (this.splitter.inOverflow) {
      // A device that stopped in the middle of an overlong record: buffer its head instead of holding it for ever.
      this.idleTimer = setTimeout(() => {
        const head = this.splitter.flushOverflow();
        if (head !== undefined) this.take(head);
      }, this.options.truncatedFlushMs ?? 1000);
      this.idleTimer.unref();
    }
  }

  private take(record: SplitRecord): void {
    if (record.kind === 'discarded') {
      this.log?.warn({ bytesSeen: record.bytesSeen }, 'serial record over maxLineBytes ended; its tail was discarded');
      return;
    }
    const out = recordToEvent(record, this.context);
    if (out === undefined) return;
    if (out.truncated) {
      // The record's tail is lost (its head is buffered, flagged).
      this.meter.dropped('truncated');
      const bytesSeen = record.kind === 'truncated' ? record.bytesSeen : record.bytes.length;
      this.log?.warn({ bytesSeen }, 'serial record over the limit: cut and flagged');
    }
    if (out.invalid !== undefined) {
      this.meter.invalid(1);
      this.log?.debug({ err: out.invalid }, 'serial record is not a valid event; buffered as an intake error');
    }
    const bytes = record.bytes.length + 256;
    this.queue.push({ event: out.event, bytes });
    this.queueBytes += bytes;
    this.applyFlow();
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
    });
  }

  /** Appends queued records in batches until none is left; one runs at a time. */
  private async pump(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.limits.maxBatchEvents);
      const bytes = batch.reduce((n, p) => n + p.bytes, 0);
      try {
        const appended = await durableAppend(
          batch.map((p) => p.event),
          undefined,
          { buffer: this.options.buffer, intake: this.name, meter: this.meter, signal: this.abort.signal, ...(this.log ? { logger: this.log } : {}) },
        );
        this.meter.eventsIn(appended);
      } catch (err) {
        // Only when closing: a serial line cannot replay, so what was read but not buffered is lost — said, and counted.
        const lost = batch.length + this.queue.length;
        this.queue = [];
        this.queueBytes = 0;
        this.meter.dropped('shutdown', lost);
        this.log?.error({ count: lost, err: (err as Error).message }, 'serial records lost: not buffered before shutdown');
        return;
      } finally {
        this.queueBytes = Math.max(0, this.queueBytes - bytes);
        this.applyFlow();
      }
    }
  }

  private setBlocked(blocked: boolean, meter: IntakeMeter): void {
    this.blocked = blocked;
    // The meter counts the ports waiting: its one gauge stays 1 while any of them does.
    meter.blocked(blocked);
    if (blocked && this.closing) this.abort.abort();
    this.applyFlow();
  }

  /** Pauses the port while the buffer is full or too many records wait; resumes when both clear. */
  private applyFlow(): void {
    const port = this.port;
    if (port === undefined) return;
    const pause = this.blocked || this.queueBytes >= (this.options.maxPendingBytes ?? 1024 * 1024);
    if (pause && !this.portPaused) port.pause();
    else if (!pause && this.portPaused) port.resume();
    this.portPaused = pause;
  }
}

