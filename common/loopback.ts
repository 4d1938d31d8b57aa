import { isIP } from 'node:net';

/**
 * Whether a listen host is a loopback address (DESIGN §6: a non-loopback
 * bind without auth refuses to start). Shared by agent and gateway.
 */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  // IPv4-mapped IPv6 loopback.
  return h.startsWith('::ffff:127.');
}
