import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { AuditEvent, ChainedEvent } from '../../protocols/index.js';
import { LevelBuffer } from '../../agent/buffer/index.js';
import { AgentErrors } from '../../agent/errors.js';
import { AppendAbortedError, durableAppend } from '../../agent/intake/durable-append.js';
import { createIntakeMeter } from '../../agent/intake/intake-meter.js';
import type { AgentBuffer } from '../../agent/buffer/types.js';

// Without metrics: every call a no-op.
const meter = createIntakeMeter(undefined, 'test');

/** A buffer whose appends fail with `failures` in turn, then succeed. */
function failingBuffer(failures: Error[]): { buffer: AgentBuffer; calls: () => number } {
  let calls = 0;
  const buffer = {
    append: async () => {
      const failure = failures[calls];
      calls += 1;
      if (failure !== undefined) throw failure;
      return [{ seq: 1 } as ChainedEvent];
    },
    waitForSpace: async () => undefined,
  } as unknown as AgentBuffer;
  return { buffer, calls: () => calls };
}

describe('durableAppend', () => {
  it('waits out a buffer that is reopening its database (BUFFER_CLOSED is not closed for good)', async () => {
    const closed = () => AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    const { buffer, calls } = failingBuffer([closed(), closed(), AgentErrors.METEORZX_BUFFER_WRITE_FAILED('No space left on device')]);
    const appended = await durableAppend([{ type: 't' }], undefined, { buffer, intake: 'test', meter, signal: new AbortController().signal, retryMs: 1 });
    expect(appended).toBe(1);
    expect(calls()).toBe(4);
  });

  it('tells the meter blocked once per wait, however many times the full buffer refuses meanwhile', async () => {
    const full = () => AgentErrors.METEORZX_BUFFER_FULL('buffer holds 9 bytes, limit 9');
    const { buffer, calls } = failingBuffer([full(), full(), full()]);
    const said: boolean[] = [];
    const counting = { ...meter, blocked: (on: boolean) => void said.push(on) };
    expect(await durableAppend([{ type: 't' }], undefined, { buffer, intake: 'test', meter: counting, signal: new AbortController().signal, retryMs: 1 })).toBe(1);
    expect(calls()).toBe(4);
    // Before: [true, true, true, false]; the edge broker counts these calls, so its gauge stayed at 1.
    expect(said).toEqual([true, false]);
  });

  it('gives up only when its own intake closes', async () => {
    const stop = new AbortController();
    const { buffer, calls } = failingBuffer(Array.from({ length: 1000 }, () => AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open')));
    const appending = durableAppend([{ type: 't' }], undefined, { buffer, intake: 'test', meter, signal: stop.signal, retryMs: 5 });
    await new Promise((r) => setTimeout(r, 30));
    stop.abort();
    await expect(appending).rejects.toBeInstanceOf(AppendAbortedError);
    expect(calls()).toBeGreaterThan(1);
  });

  it('buffers an intake error record in place of an event too large once stored, and writes the others with the checkpoint', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'meteorzx-durable-too-large-'));
    const buffer = new LevelBuffer({ dataDir, id: 'agent-1', commitIntervalMs: 1, maxLineBytes: 2048 });
    await buffer.open();
    const invalid = vi.spyOn(meter, 'invalid');
    try {
      // 100 × `1e20`: 500 bytes as read, 2,200 once canonical.
      const expanding = JSON.parse(`{"type":"big","source":"dev-7","data":{"n":[${Array.from({ length: 100 }, () => '1e20').join(',')}]}}`) as AuditEvent;
      const appended = await durableAppend([{ type: 'a' }, expanding, { type: 'b' }], [{ key: 'file', value: '42' }], {
        buffer,
        intake: 'files',
        meter,
        signal: new AbortController().signal,
        retryMs: 1,
      });
      expect(appended).toBe(3);
      expect(invalid).toHaveBeenCalledWith(1);
      const stored = await buffer.read(0, 10);
      expect(stored.map((e) => e.type)).toEqual(['a', 'meteorzx.intake.error', 'b']);
      expect(stored[1]).toMatchObject({ source: 'dev-7', outcome: 'failure', data: { intake: 'files', type: 'big', rawTruncated: true } });
      expect((stored[1]?.data as { reason: string }).reason).toMatch(/^event is \d+ bytes once stored .* over the limit of 2048/);
      expect((stored[1]?.data as { raw: string }).raw.startsWith('{"type":"big","source":"dev-7","data":{"n":[100000000000000000000,')).toBe(true);
      expect(await buffer.getMeta('file')).toBe('42');
    } finally {
      invalid.mockRestore();
      await buffer.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('buffers an intake error record in place of an event with no canonical JSON, instead of retrying it for ever', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'meteorzx-durable-unstorable-'));
    const buffer = new LevelBuffer({ dataDir, id: 'agent-1', commitIntervalMs: 1 });
    await buffer.open();
    const invalid = vi.spyOn(meter, 'invalid');
    try {
      // Validation keeps both out; an intake with a bug (a cut surrogate pair, say) could still build one.
      const broken = [
        { type: 'cut', source: 'dev-7', id: 'ok-id', data: { excerpt: 'ab\ud83d' } },
        { type: 'inf', id: 'x\udc00', data: { n: Number.POSITIVE_INFINITY } },
      ] as AuditEvent[];
      const appended = await durableAppend([{ type: 'a' }, ...broken, { type: 'b' }], [{ key: 'file', value: '43' }], {
        buffer,
        intake: 'files',
        meter,
        signal: AbortSignal.timeout(10_000),
        retryMs: 1,
      });
      expect(appended).toBe(4);
      expect(invalid).toHaveBeenCalledWith(2);
      const stored = await buffer.read(0, 10);
      expect(stored.map((e) => e.type)).toEqual(['a', 'meteorzx.intake.error', 'meteorzx.intake.error', 'b']);
      expect(stored[1]).toMatchObject({ source: 'dev-7', id: 'ok-id', outcome: 'failure', data: { intake: 'files', type: 'cut' } });
      expect((stored[1]?.data as { reason: string }).reason).toMatch(/^event cannot be stored: cannot canonicalize/);
      // An id that cannot be stored is not kept: the record gets an id of its own.
      expect(stored[2]?.id).not.toContain('x');
      expect(stored[2]).toMatchObject({ data: { intake: 'files', type: 'inf' } });
      expect(await buffer.getMeta('file')).toBe('43');
    } finally {
      invalid.mockRestore();
      await buffer.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
