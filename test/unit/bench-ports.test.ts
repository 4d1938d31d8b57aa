import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ephemeralStart, freePort } from '../../bench/lib/ports.mjs';

describe('freePort', () => {
  it("reads the kernel's ephemeral range, and falls back to 32768 when it cannot or the range starts too low", () => {
    expect(ephemeralStart(() => '32768\t60999\n')).toBe(32768);
    expect(ephemeralStart(() => '45000 65000')).toBe(45000);
    expect(ephemeralStart(() => '1024 65000')).toBe(32768);
    expect(ephemeralStart(() => 'garbage')).toBe(32768);
    expect(
      ephemeralStart(() => {
        throw new Error('ENOENT');
      }),
    ).toBe(32768);
  });

  it('gives a port below the ephemeral range that can be listened on', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThanOrEqual(20_000);
    expect(port).toBeLessThan(ephemeralStart());
    await new Promise<void>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve()));
    });
  });
});
