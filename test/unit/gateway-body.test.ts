import { deflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeContent } from '../../gateway/http/body.js';

/** Request bodies decompressed in output chunks near their size (gateway/http/body.ts). */

const text = (bytes: number): Buffer => {
  const line = '{"type":"auth.login","actor":"user-1","data":{"n":12345}}\n';
  return Buffer.from(line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes));
};

describe('decodeContent', () => {
  it('decodes bodies of one chunk, of many chunks, and right at the limit, byte for byte', async () => {
    for (const size of [10, 64 * 1024 + 3, 3 * 1024 * 1024 + 17]) {
      const body = text(size);
      expect((await decodeContent(gzipSync(body), 'gzip', size)).equals(body)).toBe(true);
      expect((await decodeContent(deflateSync(body), 'deflate', size)).equals(body)).toBe(true);
    }
  });

  it('refuses a body one byte over the limit, whatever the chunk, and a bomb far over it', async () => {
    for (const limit of [1024, 64 * 1024, 2 * 1024 * 1024]) {
      await expect(decodeContent(gzipSync(text(limit + 1)), 'gzip', limit)).rejects.toMatchObject({ code: 'METEORZX_BODY_TOO_LARGE' });
    }
    // 8 KB of gzip, 8 MB once inflated: stops at the limit.
    await expect(decodeContent(gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20)), 'gzip', 1024 * 1024)).rejects.toMatchObject({ code: 'METEORZX_BODY_TOO_LARGE' });
    await expect(decodeContent(Buffer.from('not gzip'), 'gzip', 1024)).rejects.toMatchObject({ code: 'METEORZX_BODY_UNREADABLE' });
  });
});
