import { verifyScryptPassword } from '../../../common/scrypt-password.js';
import { globMatcher } from '../../../common/source-glob.js';

/** One `intake.mqtt.users` entry (same form as the gateway's `auth.mqtt`). */
export interface DeviceLogin {
  username: string;
  /** Plain text or `scrypt$N=…,r=…,p=…$<salt>$<key>` (docs/intake-mqtt.md). */
  password: string;
  /** The device id it publishes as: its topic is audit/<source>/events. */
  source: string;
  /** Glob patterns (`*`, `?`) of other sources its events may name. */
  relayFor?: readonly string[];
}

/** Who a connected device is, once authenticated. */
export interface DeviceIdentity {
  username: string | undefined;
  /** Undefined for an anonymous device (loopback only): it may publish as any source. */
  source: string | undefined;
  /** Whether this device's events may name `source`. */
  mayUseSource: (source: string) => boolean;
}

const ANYONE = (): boolean => true;
// Compared when the username is unknown, so a wrong name costs what a wrong password costs.
const DUMMY = 'scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';


/** The edge broker's device logins; with none configured every device is anonymous. */
export class DeviceLogins {
  private readonly users: Map<string, DeviceLogin>;

  constructor(users: readonly DeviceLogin[]) {
    this.users = new Map(users.map((u) => [u.username, u]));
  }

  get enabled(): boolean {
    return this.users.size > 0;
  }

  /** The identity for these credentials, or undefined when they are wrong. */
  async authenticate(username: string | undefined, password: Buffer | undefined): Promise<DeviceIdentity | undefined> {
    if (!this.enabled) return { username, source: undefined, mayUseSource: ANYONE };
    if (username === undefined || password === undefined) return undefined;
    const user = this.users.get(username);
    const ok = await verifyScryptPassword(user?.password ?? DUMMY, password);
    if (!ok || user === undefined) return undefined;
    const relay = globMatcher(user.relayFor ?? []);
    return { username, source: user.source, mayUseSource: (s) => s === user.source || relay(s) };
  }
}
