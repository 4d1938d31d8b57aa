// Free TCP ports for processes that cannot report the port they bound (the
// agent's pull listener, rsyslog's imtcp, a gateway a proxy must name first).
// Shared with the integration tests (test/integration/agent-harness.ts).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const LOWEST = 20_000;

/**
 * Where the kernel's ephemeral range starts: read from Linux's
 * ip_local_port_range; its default (32768) elsewhere, or when the range
 * leaves less than 1,000 ports above LOWEST.
 */
export function ephemeralStart(read = () => readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')) {
  try {
    const low = Number(read().trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low >= LOWEST + 1000 && low <= 65_535) return low;
  } catch {
    // not Linux
  }
  return 32_768;
}

const EPHEMERAL_START = ephemeralStart();

/**
 * A TCP port on 127.0.0.1 that is free now. Picked at random below the
 * kernel's ephemeral range: a port the kernel handed out for `listen(0)` is
 * the kernel's to hand out again — to another process's `listen(0)`, or as
 * the source port of any outgoing connection — before the caller binds it,
 * which made parallel tests fail now and then with "port … is already in
 * use". Here only another random pick of the same number can collide, and
 * each pick is checked by listening on it.
 */
export async function freePort() {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const port = LOWEST + Math.floor(Math.random() * (EPHEMERAL_START - LOWEST));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port found in ${LOWEST}-${EPHEMERAL_START - 1} after 50 tries`);
}

function canListen(port) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
