import { isLoopback } from '../../common/loopback.js';

export { isLoopback };

// DESIGN §6: a listener bound to a non-loopback address without auth refuses
// to start, unless the operator says --insecure (like Mosquitto 2's local-only mode).

export interface ExposureCheck {
  /** The config key of the listener, named in the message: `http.listen`, `mqtt.listen`, `mqtt.tls.listen`. */
  key: string;
  host: string;
  /** Whether this listener's auth (tokens or MQTT users) is configured. */
  authConfigured: boolean;
  /** Where the operator adds the missing auth, named in the message. */
  authKey: string;
}

/** The one-line refusal for an exposed listener, or undefined when it may start. */
export function exposureProblem(check: ExposureCheck, insecure: boolean): string | undefined {
  if (insecure || check.authConfigured || isLoopback(check.host)) return undefined;
  return (
    `refusing to start: ${check.key} binds ${check.host}, a non-loopback address, with no ${check.authKey} configured; ` +
    `add ${check.authKey}, bind 127.0.0.1, or pass --insecure`
  );
}
