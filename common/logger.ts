import pino from 'pino';
import { CommonErrors } from './errors.js';
import { isLogLevel, LOG_LEVELS, type LogLevel } from './log-level.js';

export type Logger = pino.Logger;

export interface LoggerOptions {
  /** Component name, logged as `name` on every line (`agent`, `gateway`, `cli`). */
  name: string;
  /** Level from the config file; METEORZX_LOG_LEVEL overrides it. Default: info. */
  level?: LogLevel;
  /** Where METEORZX_LOG_LEVEL is read from; injectable for tests. Default: process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Where JSON lines go. Default: stderr, so stdout stays free for data (`meteorzx pull > events.ndjson`). */
  destination?: pino.DestinationStream;
}

// Secrets can reach a log line when a config section or request headers are logged whole.
const REDACT = ['token', 'password', 'hashKey', '*.token', '*.password', '*.hashKey', 'headers.authorization', '*.headers.authorization'];

/**
 * JSON-lines logger. The operator's METEORZX_LOG_LEVEL wins over the config
 * file so a running setup can be made verbose without editing it.
 */
export function createLogger(options: LoggerOptions): Logger {
  const env = options.env ?? process.env;
  const fromEnv = env.METEORZX_LOG_LEVEL;
  if (fromEnv !== undefined && fromEnv !== '' && !isLogLevel(fromEnv)) {
    throw CommonErrors.METEORZX_ENV_INVALID(
      `METEORZX_LOG_LEVEL: not a log level: "${fromEnv}" (use ${LOG_LEVELS.join(', ')})`,
      { userError: true },
    );
  }
  const level = fromEnv || options.level || 'info';
  // Synchronous writes: log volume is low (never per event), and a crash must not lose its last lines.
  const destination = options.destination ?? pino.destination({ fd: 2, sync: true });
  return pino(
    {
      name: options.name,
      level,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '[redacted]' },
    },
    destination,
  );
}
