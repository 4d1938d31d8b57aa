import type { Server } from 'node:http';

/**
 * Lets a client that half-closes after its request — `printf … | nc -N`,
 * socat, an HTTP/1.0 script on a legacy host — still get its answer. By
 * default node:http ends the connection when the client's FIN arrives, so an
 * answer not yet written (a POST waiting for its durable write) was lost
 * although the request had been carried out, and the client's retry carried
 * it out again. With this, node:http answers every
 * request already read and then closes. (`httpAllowHalfOpen` is node:http's
 * own switch, not in its typings; the listener's sockets already allow
 * half-open TCP.) A body cut short by the FIN still gets a 400.
 */
export function answerAfterHalfClose(server: Server): void {
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
}
