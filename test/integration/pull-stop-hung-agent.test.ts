import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { waitFor } from './agent-harness.js';
import { ingest, removeDir, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';

/**
 * A gateway stopping (SIGTERM) while a backfill scan waits on a pullFrom
 * agent that accepts connections and never answers: the stop must not wait
 * out that request's timeout (60 s of silence, then 2 min, per hole before
 * a939eee), which is close to systemd's 90 s stop timeout.
 */

let dir: string | undefined;
let gateway: RunningGateway | undefined;
let hung: Server | undefined;
const sockets = new Set<Socket>();

afterEach(async () => {
  await gateway?.kill9();
  for (const s of sockets) s.destroy();
  await new Promise((r) => (hung === undefined ? r(undefined) : hung.close(r)));
  if (dir !== undefined) await removeDir(dir);
});

it('SIGTERM during a backfill scan stuck on an agent that never answers exits at once', async () => {
  let requests = 0;
  hung = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', () => (requests += 1));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => hung?.listen(0, '127.0.0.1', () => r()));
  const hungUrl = `http://127.0.0.1:${(hung.address() as AddressInfo).port}`;
  dir = await tempDir('pull-stop-hung-');
  gateway = await startGateway({ dir, config: { pullFrom: [{ url: hungUrl, every: '1h' }], backfill: { grace: 0, every: '50ms' } } });
  // A device no connector serves, with a hole: the scan asks the unidentified connector who it pulls.
  await ingest(gateway.httpUrl, [1, 3].map((seq) => ({ id: `dev-1-${seq}`, type: 't', source: 'dev-1', agent: 'dev-1', epoch: 'E', seq })));
  await waitFor(() => requests > 0, 'the backfill scan to ask the hung agent');
  const stopped = gateway.stop();
  // Before the fix: the stop waited for the scan, held by the request's 60 s silence timeout.
  const code = await Promise.race([stopped, new Promise((r) => setTimeout(() => r('still running after 20 s'), 20_000))]);
  expect(code).toBe(0);
}, 40_000);
