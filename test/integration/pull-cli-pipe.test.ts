import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, runProcess } from './gateway-harness.js';
import { fakePullAgent, type FakePullAgent } from './pull-helpers.js';

/**
 * `meteorzx pull AGENT | head`: the reader goes away after a few lines. Like
 * `meteorzx query | head`, that is a normal end, not an unhandled EPIPE with
 * a stack trace.
 */

let agent: FakePullAgent;

beforeAll(async () => {
  // ~100 B a line, 20,000 lines: far more than a pipe holds, so the CLI is still writing when head exits.
  const chain = Array.from({ length: 20_000 }, (_, i) => ({ id: `e-${i + 1}`, type: 'test.pipe', agent: 'pipe-src', epoch: 'E', seq: i + 1, data: { pad: 'x'.repeat(40) } }));
  agent = await fakePullAgent({ id: 'pipe-src', epoch: 'E', chain, oldest: 1, gone: 'retention' });
});

afterAll(async () => {
  await agent.close();
});

it('exits 0 without a stack trace when the reader of its stdout closes early', async () => {
  const script = `"${process.execPath}" "${BIN}" pull ${agent.url} | head -n 2 > /dev/null; echo "exit=\${PIPESTATUS[0]}"`;
  const res = await runProcess('bash', ['-c', script]);
  // Before the fix: exit=1 and "Error: write EPIPE" with its stack on stderr.
  expect({ stdout: res.stdout.trim(), stderr: res.stderr }).toEqual({ stdout: 'exit=0', stderr: '' });
});
