import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Pool as UndiciPool } from 'undici';
import { describe, expect, it } from 'vitest';
import { Pool, poolRequest } from '../../agent/push/undici-pool.js';

describe('the HTTP push loads only undici Pool', () => {
  it('is undici own Pool class, and poolRequest is its request API', async () => {
    expect(Pool).toBe(UndiciPool);
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += String(c)));
      req.on('end', () => res.writeHead(201, { 'x-got': String(body.length) }).end(`${req.method} ${req.url}`));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { connections: 1 });
    try {
      const res = await poolRequest(pool, { method: 'POST', path: '/v1/events?x=1', body: 'abc' });
      expect(res.statusCode).toBe(201);
      expect(res.headers['x-got']).toBe('3');
      expect(await res.body.text()).toBe('POST /v1/events?x=1');
    } finally {
      await pool.destroy();
      server.close();
    }
  });

  it('the agent HTTP transport does not load the rest of undici (fetch, WebSocket, caches: about 6 MB of an idle agent)', () => {
    const transport = fileURLToPath(new URL('../../dist/agent/push/http-transport.js', import.meta.url));
    const script = `
      import { createRequire } from 'node:module';
      const { HttpTransport } = await import(${JSON.stringify(transport)});
      new HttpTransport({ url: 'http://127.0.0.1:9/v1/events' }).close();
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((p) => p.includes('/undici/'));
      console.log(JSON.stringify(loaded.map((p) => p.slice(p.lastIndexOf('/undici/') + 8))));`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
    expect(loaded).toContain('lib/dispatcher/pool.js');
    expect(loaded).not.toContain('index.js');
    expect(loaded.filter((p) => p.startsWith('lib/web/'))).toEqual([]);
  });
});
