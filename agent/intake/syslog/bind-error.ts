import { AgentErrors } from '../../errors.js';

/** Where a syslog listener is bound (the real port when configured with port 0). */
export interface BoundAddress {
  protocol: 'udp' | 'tcp' | 'tls';
  host: string;
  port: number;
}

/** The typed error for a listener that cannot bind, naming the config key (one clear line for the operator). */
export function bindError(err: Error & { code?: string }, where: string) {
  const at = `intake.syslog.listen ${where}`;
  return err.code === 'EADDRINUSE'
    ? AgentErrors.METEORZX_PORT_IN_USE(`${at}: port already in use`, { cause: err, userError: true })
    : AgentErrors.METEORZX_LISTEN_FAILED(`${at}: ${err.message}`, { cause: err, userError: true });
}
