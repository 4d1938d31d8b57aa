// Free TCP ports for processes that cannot report the port they bound (the
// agent's pull listener, rsyslog's imtcp, a gateway a proxy must name first).
// Shared with the integration tests (test/integration/agent-harness.ts).
import { createServer } from 'node:net';

/** Linux's default ephemeral range starts here (/proc/sys/net/ipv4/ip_local_port_range). */
const EPHEMERAL_START = 32_768;
const LOWEST = 20_000;

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
