import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration and fault tests spawn real processes; keep their time bounded but generous.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // vitest's default is one worker fewer than the cores: on a 2-core box the files ran one at a time
    // (584 s). They are written to run side by side (own temp dirs, free ports): 306 s with 2 workers.
    maxWorkers: Math.max(2, availableParallelism()),
  },
});
