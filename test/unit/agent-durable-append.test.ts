import { describe, expect, it } from 'vitest';
import type { ChainedEvent } from '../../protocols/index.js';
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
    expect(appended).toHaveLength(1);
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
});
