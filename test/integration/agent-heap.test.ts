import { afterAll, describe, expect, it } from 'vitest';
import { killAll, removeDir, startAgent, tempDir, youngGenerationAfterLoad } from './agent-harness.js';

/**
 * `meteorzx agent` sets its own V8 flags as it starts (agent/v8-flags.ts):
 * the young generation stays small under load. The packaged agent is held to
 * the same in packaging.test.ts.
 */

const dirs: string[] = [];
afterAll(async () => {
  await killAll();
  await Promise.all(dirs.map(removeDir));
});

describe('the agent young generation', () => {
  it('stays at a few MB under load; with METEORZX_AGENT_V8_FLAGS="" V8 grows it as usual', async () => {
    const sizes: Record<string, number> = {};
    for (const [name, env] of [
      ['agent', {}],
      ['v8 defaults', { METEORZX_AGENT_V8_FLAGS: '' }],
    ] as const) {
      const dir = await tempDir('heap');
      dirs.push(dir);
      const agent = await startAgent(dir, { buffer: { durability: 'os' } }, env);
      sizes[name] = await youngGenerationAfterLoad(agent.intakeUrl, agent.pullUrl);
      expect(await agent.stop()).toBe(0);
    }
    expect(sizes.agent).toBeLessThanOrEqual(4 * 1024 * 1024);
    // The load is enough to show the difference: without the flags the same load grows it.
    expect(sizes['v8 defaults']).toBeGreaterThan(8 * 1024 * 1024);
  });
});
