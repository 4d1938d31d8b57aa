import { execFile } from 'node:child_process';

/** What a service tells systemd (sd_notify(3)); RELOADING=1 is answered by READY=1 once reloaded. */
export type SystemdState = 'READY=1' | 'RELOADING=1' | 'STOPPING=1';

export interface NotifyOptions {
  /** Where NOTIFY_SOCKET is read. Default: process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Told when the notification could not be sent (the service keeps running). */
  warn?: (message: string) => void;
  /** The systemd-notify program. Default: found on PATH. */
  command?: string;
}

// systemd-notify returns within milliseconds; a hung one must not hold the service's start.
const NOTIFY_TIMEOUT_MS = 5_000;

/**
 * Tells systemd about the service's state, for units with `Type=notify`.
 * Does nothing (and resolves false) when not started by such a unit, i.e.
 * without NOTIFY_SOCKET.
 *
 * Why systemd-notify(1) and not a socket of our own: the message goes to a
 * unix *datagram* socket, which Node cannot open, and the npm packages that
 * can (sd-notify) need a native build. systemd-notify is on every systemd
 * host. It is a child process, so the unit needs `NotifyAccess=all`; since
 * systemd 246 it waits until PID 1 has processed the message (a barrier), so
 * the message is attributed to the unit even though the sender exits at once.
 * Never throws: a failed notification is reported through `warn`, and systemd
 * then fails the start by its own timeout, which is where it is visible.
 */
export async function notifySystemd(state: SystemdState, options: NotifyOptions = {}): Promise<boolean> {
  const env = options.env ?? process.env;
  const socket = env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') return false;
  const command = options.command ?? 'systemd-notify';
  return new Promise((resolve) => {
    execFile(command, [state], { env: { ...env }, timeout: NOTIFY_TIMEOUT_MS }, (err, _stdout, stderr) => {
      if (err === null) return resolve(true);
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${command} not found on PATH` : `${err.message.trim()} ${stderr.trim()}`.trim();
      options.warn?.(`could not notify systemd (${state}): ${why}`);
      resolve(false);
    });
  });
}
