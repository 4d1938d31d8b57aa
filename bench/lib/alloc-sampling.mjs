// Where a process allocates, garbage included: preload this into a MeteorZX
// process (`node --import=<this file> …`, e.g. through agent-e2e.mjs's
// --agent-node-args or --gateway-node-args) and send it SIGUSR2; it writes
// a sampling heap profile of everything allocated since start, objects the
// GC has already collected included (what `--heap-prof` leaves out), to
// $METEORZX_ALLOC_PROFILE_DIR (default: the temp dir). Read it with
// `node bench/lib/alloc-top.mjs FILE`.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const session = new Session();
session.connect();
const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
await post('HeapProfiler.enable');
await post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
process.on('SIGUSR2', async () => {
  const { profile } = await post('HeapProfiler.stopSampling');
  const file = join(process.env.METEORZX_ALLOC_PROFILE_DIR ?? tmpdir(), `alloc-${process.pid}-${Date.now()}.heapprofile`);
  writeFileSync(file, JSON.stringify(profile));
  process.stderr.write(`allocation profile written to ${file}\n`);
  await post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
});
