import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../agent/metrics.js';
import { FakeBuffer } from './agent-fake-buffer.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('AgentMetrics', () => {
  it('lets a registry no longer used be collected, process metrics included: a restart-reload makes a new one each time', async () => {
    const buffer = new FakeBuffer();
    const made = async (): Promise<WeakRef<object>> => {
      const metrics = new AgentMetrics({ buffer: () => buffer.state(), push: () => 'idle' });
      // Each registry serves the process metrics.
      expect(await metrics.registry.getSingleMetricAsString('meteorzx_agent_process_cpu_seconds_total')).toMatch(/^meteorzx_agent_process_cpu_seconds_total \d/m);
      expect(await metrics.registry.getSingleMetricAsString('meteorzx_agent_nodejs_gc_duration_seconds')).toContain('# TYPE meteorzx_agent_nodejs_gc_duration_seconds histogram');
      return new WeakRef(metrics.registry);
    };
    const registries: WeakRef<object>[] = [];
    for (let i = 0; i < 5; i += 1) registries.push(await made());
    // WeakRefs hold their targets until the current job ends.
    await new Promise((resolve) => setTimeout(resolve, 0));
    gc();
    // Before: prom-client's GC observer and event-loop monitor, made per registry and never stopped, held every one
    // (and through its gauges the whole agent: 30 restart-reloads of the CLI grew its heap from 24 to 38 MB).
    expect(registries.filter((r) => r.deref() !== undefined)).toHaveLength(0);
  });
});
