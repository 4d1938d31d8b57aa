import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { holdStartupSignals, releaseStartupSignals, withHeldSignals, type SignalProcess } from '../../cli/held-signals.js';

/** A process stand-in: signals are events; exit is recorded. */
function fakeProcess(): SignalProcess & { emitter: EventEmitter; exits: number[] } {
  const emitter = new EventEmitter();
  const exits: number[] = [];
  return {
    emitter,
    exits,
    on: ((event: string, l: (...args: unknown[]) => void) => emitter.on(event, l)) as SignalProcess['on'],
    off: ((event: string, l: (...args: unknown[]) => void) => emitter.off(event, l)) as SignalProcess['off'],
    emit: ((event: string, ...args: unknown[]) => emitter.emit(event, ...args)) as SignalProcess['emit'],
    exit: ((code: number) => void exits.push(code)) as SignalProcess['exit'],
  };
}

describe('signals held from the start of the program', () => {
  it('holds only for a service command (agent, gateway): any other keeps Node’s default action', () => {
    for (const command of ['send', 'pull', 'query', 'status', 'config', undefined]) {
      const proc = fakeProcess();
      holdStartupSignals(['node', 'meteorzx', ...(command === undefined ? [] : [command])], proc);
      expect(proc.emitter.listenerCount('SIGTERM') + proc.emitter.listenerCount('SIGHUP'), String(command)).toBe(0);
      releaseStartupSignals();
    }
  });

  it('a service command takes the start-up hold: what came while the program loaded reaches its loop', async () => {
    const proc = fakeProcess();
    holdStartupSignals(['node', 'meteorzx', 'agent'], proc);
    proc.emit('SIGHUP', 'SIGHUP');
    proc.emit('SIGTERM', 'SIGTERM');
    const seen: string[] = [];
    await withHeldSignals(async (held) => {
      proc.on('SIGHUP', () => seen.push('SIGHUP'));
      proc.on('SIGTERM', () => seen.push('SIGTERM'));
      held.release();
    });
    expect(seen).toEqual(['SIGHUP', 'SIGTERM']);
    expect(proc.exits).toEqual([]);
    // Taken once: a later hold is the command's own, on the real process.
    releaseStartupSignals();
    expect(proc.emitter.listenerCount('SIGTERM')).toBe(1);
  });

  it('a second stop while held exits at once (128 + its number)', () => {
    const proc = fakeProcess();
    holdStartupSignals(['node', 'meteorzx', 'gateway'], proc);
    proc.emit('SIGTERM', 'SIGTERM');
    proc.emit('SIGINT', 'SIGINT');
    expect(proc.exits).toEqual([130]);
    releaseStartupSignals();
    expect(proc.emitter.listenerCount('SIGINT')).toBe(0);
  });
});
