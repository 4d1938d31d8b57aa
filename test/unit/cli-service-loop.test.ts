import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { runService, type SignalSource } from '../../cli/service-loop.js';

/** The SIGHUP/SIGTERM loop shared by `meteorzx agent` and `meteorzx gateway`, with fake signals and services. */

class FakeSignals extends EventEmitter implements SignalSource {
  exits: number[] = [];
  exit(code: number): void {
    this.exits.push(code);
  }
  send(signal: NodeJS.Signals): void {
    this.emit(signal, signal);
  }
}

class FakeService {
  started = false;
  closed = 0;
  constructor(readonly config: string) {}
  async close(): Promise<void> {
    this.closed += 1;
  }
}

const tick = () => new Promise((r) => setTimeout(r, 5));

function setup(
  opts: { configs?: (string | Error)[]; inPlace?: (next: string) => boolean; failStart?: (config: string) => boolean; unrecoverable?: (err: unknown) => boolean } = {},
) {
  const signals = new FakeSignals();
  const services: FakeService[] = [];
  const notified: string[] = [];
  const logs: string[] = [];
  const failures: unknown[] = [];
  const configs = [...(opts.configs ?? [])];
  const log = (_obj: object, msg: string) => logs.push(msg);
  const done = runService<string, FakeService>({
    config: 'c0',
    load: async () => {
      const next = configs.shift() ?? 'same';
      if (next instanceof Error) throw next;
      return next;
    },
    create: (config) => {
      const s = new FakeService(config);
      services.push(s);
      return s;
    },
    start: async (s) => {
      if (opts.failStart?.(s.config)) throw new Error(`cannot start ${s.config}`);
      s.started = true;
    },
    ...(opts.inPlace ? { reloadInPlace: async (_s: FakeService, next: string) => opts.inPlace?.(next) ?? false } : {}),
    ...(opts.unrecoverable ? { unrecoverable: opts.unrecoverable } : {}),
    onReloadFailed: (err) => failures.push(err),
    logger: { info: log, warn: log, error: log },
    notify: async (state) => notified.push(state),
    signals,
  });
  return { signals, services, notified, logs, failures, done };
}

describe('runService', () => {
  it('starts, tells systemd READY=1, and on SIGTERM drains and resolves with the signal', async () => {
    const t = setup();
    await tick();
    expect(t.services.map((s) => s.started)).toEqual([true]);
    expect(t.notified).toEqual(['READY=1']);
    t.signals.send('SIGTERM');
    expect(await t.done).toBe('SIGTERM');
    expect(t.services[0]?.closed).toBe(1);
    expect(t.signals.listenerCount('SIGHUP') + t.signals.listenerCount('SIGTERM') + t.signals.listenerCount('SIGINT')).toBe(0);
  });

  it('SIGHUP with an invalid config: logged, service kept, RELOADING=1 then READY=1', async () => {
    const t = setup({ configs: [new Error('bad key')] });
    await tick();
    t.signals.send('SIGHUP');
    await tick();
    expect(t.logs).toContain('reload: config rejected, running on with the current one');
    expect(t.services).toHaveLength(1);
    expect(t.services[0]?.closed).toBe(0);
    expect(t.notified).toEqual(['READY=1', 'RELOADING=1', 'READY=1']);
    t.signals.send('SIGINT');
    await t.done;
  });

  it('SIGHUP with a valid config: applied in place when the service can, else a restart', async () => {
    const t = setup({ configs: ['c1', 'c2'], inPlace: (next) => next === 'c1' });
    await tick();
    t.signals.send('SIGHUP');
    await tick();
    expect(t.services).toHaveLength(1);
    expect(t.logs).toContain('reload: applied in place');
    t.signals.send('SIGHUP');
    await tick();
    expect(t.services.map((s) => [s.config, s.started, s.closed])).toEqual([
      ['c0', true, 1],
      ['c2', true, 0],
    ]);
    expect(t.notified).toEqual(['READY=1', 'RELOADING=1', 'READY=1', 'RELOADING=1', 'READY=1']);
    t.signals.send('SIGTERM');
    await t.done;
    expect(t.services[1]?.closed).toBe(1);
  });

  it('a stop during a reload closes the service the reload started', async () => {
    const t = setup({ configs: ['c1'] });
    await tick();
    t.signals.send('SIGHUP');
    t.signals.send('SIGTERM');
    await t.done;
    expect(t.services.map((s) => [s.config, s.closed])).toEqual([
      ['c0', 1],
      ['c1', 1],
    ]);
  });

  it('a restart whose new config cannot start (a port taken) starts again with the current one, logged and counted', async () => {
    const t = setup({ configs: ['broken', 'c2'], failStart: (c) => c === 'broken' });
    await tick();
    t.signals.send('SIGHUP');
    await tick();
    // Before: the loop rejected and the CLI exited 1.
    expect(t.services.map((s) => [s.config, s.started])).toEqual([
      ['c0', true],
      ['broken', false],
      ['c0', true],
    ]);
    expect(t.logs).toContain('reload: the new config could not start (cannot start broken); starting again with the current one');
    expect(t.failures.map((e) => (e as Error).message)).toEqual(['cannot start broken']);
    expect(t.notified).toEqual(['READY=1', 'RELOADING=1', 'READY=1']);
    // The next reload starts from the config that runs, and the stop closes the service that runs.
    t.signals.send('SIGHUP');
    await tick();
    expect(t.services.at(-1)?.config).toBe('c2');
    t.signals.send('SIGTERM');
    expect(await t.done).toBe('SIGTERM');
    expect(t.services.map((s) => s.closed)).toEqual([1, 0, 1, 1]);
  });

  it('an in-place reload that cannot apply its config (a port taken) leaves the service running, logged and counted', async () => {
    const t = setup({
      configs: ['taken', 'c2'],
      inPlace: (next) => {
        if (next === 'taken') throw new Error('syslog port taken');
        return true;
      },
    });
    await tick();
    t.signals.send('SIGHUP');
    await tick();
    expect(t.services.map((s) => [s.config, s.closed])).toEqual([['c0', 0]]);
    expect(t.logs).toContain('reload: the new config could not start (syslog port taken); running on with the current one');
    expect(t.failures).toHaveLength(1);
    expect(t.notified).toEqual(['READY=1', 'RELOADING=1', 'READY=1']);
    t.signals.send('SIGHUP');
    await tick();
    expect(t.logs).toContain('reload: applied in place');
    t.signals.send('SIGTERM');
    expect(await t.done).toBe('SIGTERM');
  });

  it('rejects (the CLI exits 1) when an in-place reload could not put the current config back, after closing the service', async () => {
    const t = setup({
      configs: ['taken'],
      inPlace: () => {
        throw Object.assign(new Error('syslog port taken; and the current intakes cannot start again: port in use'), { code: 'GONE' });
      },
      unrecoverable: (err) => (err as { code?: string }).code === 'GONE',
    });
    await tick();
    t.signals.send('SIGHUP');
    await expect(t.done).rejects.toThrow('the current intakes cannot start again');
    expect(t.logs.at(-1)).toMatch(/^reload: the new config could not start \(syslog port taken; .*\); nor could the current one start again: exiting/);
    expect(t.failures).toHaveLength(1);
    expect(t.services.map((s) => [s.config, s.closed])).toEqual([['c0', 1]]);
    expect(t.notified).toEqual(['READY=1', 'RELOADING=1']);
  });

  it('rejects (the CLI exits 1) when the current config cannot start again either, after closing what is left', async () => {
    let c0Starts = 0;
    const t = setup({ configs: ['broken'], failStart: (c) => c === 'broken' || (c === 'c0' && ++c0Starts > 1) });
    await tick();
    t.signals.send('SIGHUP');
    await expect(t.done).rejects.toThrow('cannot start c0');
    expect(t.services.map((s) => s.config)).toEqual(['c0', 'broken', 'c0']);
    expect(t.services.at(-1)?.closed).toBe(1);
  });

  it('a second stop signal exits at once with 128 + its number', async () => {
    const t = setup();
    await tick();
    // Hold the drain: the first signal waits for the service to close.
    let release: () => void = () => undefined;
    (t.services[0] as FakeService).close = () => new Promise<void>((r) => (release = r));
    t.signals.send('SIGTERM');
    await tick();
    t.signals.send('SIGINT');
    expect(t.signals.exits).toEqual([130]);
    release();
    await t.done;
  });
});
