import { globMatcher } from '../../common/source-glob.js';
import { verifyPassword } from './password.js';

export interface MqttUserEntry {
  username: string;
  /** Plain text or `scrypt$N=…,r=…,p=…$<salt>$<key>` (see password.ts). */
  password: string;
  /** The one source this user publishes as: its topic is audit/<source>/events. */
  source: string;
  /** Glob patterns of other sources its events may name (an edge agent relaying devices). */
  relayFor?: readonly string[];
}

/** Who a connected MQTT client is, once authenticated. */
export interface MqttIdentity {
  username: string | undefined;
  /** Undefined for an anonymous client: it may publish as any source. */
  source: string | undefined;
  /** Whether events on this client's topic may name `source`. */
  mayUseSource: (source: string) => boolean;
}

const ANY = (): boolean => true;
// A password that matches nothing, compared when the username is unknown so that path costs the same.
const DUMMY = 'scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

/** The `auth.mqtt` user list. */
export class MqttUsers {
  private readonly users: Map<string, MqttUserEntry>;

  constructor(users: readonly MqttUserEntry[]) {
    this.users = new Map(users.map((u) => [u.username, u]));
  }

  get enabled(): boolean {
    return this.users.size > 0;
  }

  /** The identity for these credentials, or undefined when they are wrong. */
  async authenticate(username: string | undefined, password: Buffer | undefined): Promise<MqttIdentity | undefined> {
    if (!this.enabled) return { username, source: undefined, mayUseSource: ANY };
    if (username === undefined || password === undefined) return undefined;
    const user = this.users.get(username);
    const ok = await verifyPassword(user?.password ?? DUMMY, password);
    if (!ok || user === undefined) return undefined;
    const relay = globMatcher(user.relayFor ?? []);
    return { username, source: user.source, mayUseSource: (s) => s === user.source || relay(s) };
  }
}
