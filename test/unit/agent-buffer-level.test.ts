import { ClassicLevel } from 'classic-level';
import { open, readdir, writeFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { vi } from 'vitest';
import { LevelBuffer } from '../../agent/buffer/index.js';
import { bufferSuite } from '../conformance/buffer-suite.js';

bufferSuite('LevelBuffer', {
  create: (options) => new LevelBuffer({ ...options, commitIntervalMs: 1 }),
  sweep: (buffer) => (buffer as LevelBuffer).sweep(),
  async corrupt(dataDir, how) {
    const dbDir = join(dataDir, 'buffer');
    const files = await readdir(dbDir);
    const victims = files.filter((f) => (how === 'manifest' ? /^MANIFEST-/.test(f) : /\.(ldb|sst)$/.test(f)));
    if (victims.length === 0) throw new Error(`no ${how} file to corrupt in ${files.join(', ')}`);
    for (const f of victims) {
      const { size } = await stat(join(dbDir, f));
      if (how === 'table-middle') {
        // The second quarter of the file: data blocks, with the index and footer at the end intact.
        const fh = await open(join(dbDir, f), 'r+');
        await fh.write(Buffer.alloc(Math.floor(size / 4), 0x5a), 0, Math.floor(size / 4), Math.floor(size / 4));
        await fh.close();
      } else {
        await writeFile(join(dbDir, f), Buffer.alloc(Math.max(size, 64), 0x5a));
      }
    }
  },
  async measureOpenReads(open) {
    // Each iterator opened during open() may read at most `limit` entries; one without a limit is a scan.
    const spy = vi.spyOn(ClassicLevel.prototype, 'iterator');
    try {
      await open();
      return spy.mock.calls.reduce((n, [options]) => n + ((options as { limit?: number } | undefined)?.limit ?? Infinity), 0);
    } finally {
      spy.mockRestore();
    }
  },
});
