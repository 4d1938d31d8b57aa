import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration and fault tests spawn real processes; keep their time bounded but generous.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
