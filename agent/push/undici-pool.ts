// undici's Pool and its request() without the rest of undici. The package's
// index loads every part of it (fetch, WebSocket, caches, proxies, mocks) and
// adds the request API to every dispatcher: ≈ 11 MB of an idle agent's
// private memory, against ≈ 4.5 MB for these two files (docs/performance.md,
// "7 Dec: only undici's Pool"). Deep paths are pinned by the lock file;
// test/unit/agent-undici-pool.test.ts checks they are the same classes as
// undici's own.
import type { Dispatcher, Pool as UndiciPool } from 'undici';
import PoolModule from 'undici/lib/dispatcher/pool.js';
import requestModule from 'undici/lib/api/api-request.js';

export type Pool = UndiciPool;
export const Pool = PoolModule as unknown as typeof UndiciPool;

const requestApi = requestModule as unknown as (this: Dispatcher, options: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;

/** `pool.request(options)`, as undici's index adds it to every dispatcher. */
export function poolRequest(pool: Pool, options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData> {
  return requestApi.call(pool, options);
}
