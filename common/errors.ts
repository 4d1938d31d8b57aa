import { defineErrors } from '../protocols/errors.js';

/**
 * Errors of the shared helpers (config loading, logger, CLI plumbing).
 * Codes are stable: scripts and docs/errors.md refer to them.
 */
export const CommonErrors = defineErrors({
  METEORZX_CONFIG_NOT_FOUND: { description: 'The config file does not exist.' },
  METEORZX_CONFIG_UNREADABLE: { description: 'The config file exists but cannot be read (permissions, a directory, too large).' },
  METEORZX_CONFIG_SYNTAX: { description: 'The config file is not valid YAML or JSON.' },
  METEORZX_CONFIG_INVALID: {
    description: 'The config does not match its schema; the error lists every problem with its dotted path.',
  },
  METEORZX_CONFIG_ENV_MISSING: {
    description: 'A `${VAR}` reference in the config names an unset environment variable and gives no `:-default`.',
  },
  METEORZX_CONFIG_SECRET_FILE: {
    description: 'A secret file (`tokenFile`, `passwordFile`) cannot be read, is empty, or is given together with the inline secret.',
  },
  METEORZX_GATEWAY_UNREACHABLE: { description: 'The CLI cannot reach the URL it was given (refused, unknown host, timeout).' },
  METEORZX_VERIFY_FAILED: { description: '`meteorzx verify` found a broken ledger link or a stored event whose hash does not match.' },
  METEORZX_QUERY_INCOMPLETE: {
    description:
      '`meteorzx query` wrote every event it could read, but the gateway left out stored blocks that do not decode, or (`--id`) could not follow the id\'s damaged dedup pointer (each is named on stderr); the exit status is 1.',
  },
  METEORZX_EVENTS_REJECTED: { description: '`meteorzx send` finished, but the receiver rejected some events (each is listed with its reason).' },
  METEORZX_NOT_READY: {
    description: '`meteorzx status`: the gateway answers but is not ready (starting, draining, or its storage cannot write), or the agent cannot write its buffer; the report is printed, and the exit status is 1.',
  },
  METEORZX_ENV_INVALID: { description: 'An environment variable read by MeteorZX (e.g. METEORZX_LOG_LEVEL) has an invalid value.' },
  METEORZX_USAGE: { description: 'The command line is wrong: unknown command or option, missing or invalid argument.' },
});

export type CommonErrorCode = Exclude<keyof typeof CommonErrors, 'specs'>;
