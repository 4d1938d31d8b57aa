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
    const appended = await durableAppend([{ type: 't' }], undefined, { buffer, meter, signal: new AbortController().signal, retryMs: 1 });
    expect(appended).toBe(1);
    expect(calls()).toBe(4);
  });

  it('gives up only when its own intake closes', async () => {
    const stop = new AbortController();
    const { buffer, calls } = failingBuffer(Array.from({ length: 1000 }, () => AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open')));
    const appending = durableAppend([{ type: 't' }], undefined, { buffer, meter, signal: stop.signal, retryMs: 5 });
    await new Promise((r) => setTimeout(r, 30));
    stop.abort();
    await expect(appending).rejects.toBeInstanceOf(AppendAbortedError);
    expect(calls()).toBeGreaterThan(1);
  });

  it('leaves out events too large once stored, for good, and still writes the others with the checkpoint', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'meteorzx-durable-too-large-'));
    const buffer = new LevelBuffer({ dataDir, id: 'agent-1', commitIntervalMs: 1, maxLineBytes: 2048 });
    await buffer.open();
    const invalid = vi.spyOn(meter, 'invalid');
    try {
      // 100 × `1e20`: 500 bytes as read, 2,200 once canonical.
      const expanding = JSON.parse(`{"type":"big","data":{"n":[${Array.from({ length: 100 }, () => '1e20').join(',')}]}}`) as AuditEvent;
      const appended = await durableAppend([{ type: 'a' }, expanding, { type: 'b' }], [{ key: 'file', value: '42' }], {
        buffer,
        meter,
        signal: new AbortController().signal,
        retryMs: 1,
      });
      expect(appended).toBe(2);
      expect(invalid).toHaveBeenCalledWith(1);
      expect((await buffer.read(0, 10)).map((e) => e.type)).toEqual(['a', 'b']);
      expect(await buffer.getMeta('file')).toBe('42');
      // Only the too-large events: the checkpoint still moves when none is left.
      expect(await durableAppend([expanding], [{ key: 'file', value: '43' }], { buffer, meter, signal: new AbortController().signal })).toBe(0);
      expect(await buffer.getMeta('file')).toBe('43');
      expect(buffer.state().head).toBe(2);
    } finally {
      invalid.mockRestore();
      await buffer.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
