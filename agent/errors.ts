import { defineErrors } from '../protocols/errors.js';

/**
 * The agent's error catalogue (STYLE §4). Codes are stable: intake answers,
 * logs and docs/errors.md refer to them. Keep it one object literal; add codes
 * at the end of their group.
 */
export const AgentErrors = defineErrors({
  // Buffer (agent/buffer): the status is what the HTTP intake answers with.
  METEORZX_BUFFER_FULL: {
    description: 'The buffer holds buffer.maxBytes and the policy is `block`: retry after the push sink delivers (503 + Retry-After).',
    status: 503,
  },
  METEORZX_BUFFER_REJECTED: {
    description: 'The buffer holds buffer.maxBytes and the policy is `reject`: new events are refused, buffered ones are kept.',
    status: 507,
  },
  METEORZX_BUFFER_CORRUPT: {
    description: 'The buffer database is corrupt: at open it is moved aside and a new epoch starts; at read the range is unreadable.',
    status: 500,
  },
  METEORZX_BUFFER_WRITE_FAILED: {
    description: 'A group commit could not be written (disk full, I/O error): none of its events was acknowledged.',
    status: 503,
  },
  METEORZX_BUFFER_CLOSED: { description: 'The buffer is not open (not yet opened, or closing).', status: 503 },
  METEORZX_BUFFER_OPEN_FAILED: {
    description: 'The buffer database cannot be opened for a reason other than corruption (locked by another process, permissions).',
  },
  METEORZX_BUFFER_INVALID_KEY: { description: 'An `extra` key passed to the buffer is empty or too long.' },
  METEORZX_EVENT_TOO_LARGE: {
    description:
      'An event is over maxEventBytes + 1 KiB once stored (its canonical JSON with the fields the agent adds, e.g. 1e20 written as 21 digits): the gateway would refuse it, so it is refused alone with a per-event error; the others are stored.',
    status: 413,
  },
  METEORZX_EVENT_UNSTORABLE: {
    description:
      'An event handed to the buffer has no canonical JSON (a lone surrogate, a non-finite number: validation keeps these out, so only an intake with a bug can send one): it is refused alone, and a reading intake buffers an intake error record in its place instead of retrying; the others are stored.',
    status: 422,
  },
  // Agent runtime (agent/intake, agent/push, agent/status, agent/agent.ts). HTTP codes match the gateway's.
  METEORZX_INTAKE_BUSY: {
    description: 'The HTTP intake is at its limit of concurrent requests or of body bytes held in memory; retry after Retry-After.',
    status: 503,
  },
  METEORZX_INTAKE_CLOSING: { description: 'The agent is shutting down and takes no more events; retry against the restarted agent.', status: 503 },
  METEORZX_UNAUTHORIZED: { description: 'An HTTP request has no bearer token or a wrong one.', status: 401 },
  METEORZX_NOT_FOUND: { description: 'No such HTTP route.', status: 404 },
  METEORZX_BAD_REQUEST: { description: 'A query parameter is missing or invalid (after, limit), or the request target is not a URL path.', status: 400 },
  METEORZX_METHOD_NOT_ALLOWED: { description: 'The HTTP route exists but not for this method.', status: 405 },
  METEORZX_INTERNAL: { description: 'An unexpected error answered a request; the agent log has the details.', status: 500 },
  METEORZX_PORT_IN_USE: { description: 'A listener cannot bind its port because another process holds it; the message names the config key.' },
  METEORZX_LISTEN_FAILED: { description: 'A listener cannot bind its address (permission, unknown host); the message names the config key.' },
  METEORZX_RELOAD_UNRECOVERABLE: {
    description:
      'A reload applied in place could not start its new intakes, nor the current ones again (a port taken meanwhile): the agent exits 1, so that its supervisor (systemd Restart=on-failure) restarts it, rather than run on with those intakes down.',
  },
  METEORZX_INSECURE_BIND: {
    description:
      'The pull listener binds a non-loopback address with no pull.token (set a token, bind 127.0.0.1, or pass --insecure), or the edge MQTT broker (intake.mqtt.listen) does with no intake.mqtt.users.',
  },
  // Pull API (agent/pull).
  METEORZX_PULL_BUSY: {
    description: 'The pull API holds as many answer bytes in memory as it may (pages being read or sent to slow clients); retry after Retry-After.',
    status: 503,
  },
  METEORZX_PULL_GONE: {
    description: 'A pull asked for seqs retention already deleted, or for an epoch the buffer no longer is (410); the answer names the oldest seq still held.',
    status: 410,
  },
});

export type AgentErrorCode = Exclude<keyof typeof AgentErrors, 'specs'>;
