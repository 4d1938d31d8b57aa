import { SOURCE_RE, type EpochStatus } from '../../protocols/index.js';

/** What an agent's retained status (`audit/<agent>/status`) says it has delivered, and since when the gateway has heard so. */
export interface TailClaim {
  epoch: string;
  delivered: number;
  /** RFC 3339: when the gateway first heard this `delivered` for this epoch. */
  since: string;
}

/** Agents remembered at most; past it the one heard from longest ago goes (a status is ≤ 4 KiB, but any client may name one). */
const MAX_AGENTS = 10_000;

/**
 * An agent pushing over MQTT announces its delivered cursor in its retained
 * status (agent/push/mqtt-transport.ts, progress). Behind a Mosquitto
 * bridge, that cursor follows the PUBACKs of the bridge's broker, which may
 * lose events it acked; the gateway then saw the loss only as a hole, when
 * a later event arrived — a lost tail stayed invisible for as long as the
 * agent was quiet. Here each claim past the seqs stored for that epoch is
 * added to the registry's view as one more gap (`since`: when the claim
 * was heard), so the backfill scan alerts on it after `backfill.grace`
 * (`seq-gap`) and asks the agent for it, as for any hole. Kept in memory
 * only: an agent announces itself again at each (re)connection.
 */
export class TailClaims {
  private readonly claims = new Map<string, TailClaim>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Takes a status payload published on `audit/<agent>/status`; one that claims nothing is ignored. */
  record(agent: string, payload: Uint8Array): void {
    let status: { epoch?: unknown; delivered?: unknown };
    try {
      status = JSON.parse(Buffer.from(payload).toString('utf8')) as typeof status;
    } catch {
      return;
    }
    const { epoch, delivered } = status ?? {};
    if (typeof epoch !== 'string' || !SOURCE_RE.test(epoch) || typeof delivered !== 'number' || !Number.isSafeInteger(delivered) || delivered < 1) return;
    const before = this.claims.get(agent);
    if (before !== undefined && before.epoch === epoch && before.delivered === delivered) return;
    this.claims.delete(agent);
    this.claims.set(agent, { epoch, delivered, since: new Date(this.now()).toISOString() });
    if (this.claims.size > MAX_AGENTS) this.claims.delete(this.claims.keys().next().value as string);
  }

  /** The registry's epochs, with each claimed tail past what is stored as one more gap. */
  withTails(epochs: readonly EpochStatus[]): EpochStatus[] {
    if (this.claims.size === 0) return [...epochs];
    const index = new Map<string, number>();
    const out = [...epochs];
    out.forEach((e, i) => {
      if (this.claims.get(e.agent)?.epoch === e.epoch) index.set(e.agent, i);
    });
    for (const [agent, claim] of this.claims) {
      const at = index.get(agent);
      const stored = at === undefined ? undefined : (out[at] as EpochStatus);
      const lastSeq = stored?.lastSeq ?? 0;
      if (claim.delivered <= lastSeq) continue;
      const tail = { from: lastSeq + 1, to: claim.delivered, since: claim.since };
      if (stored === undefined) {
        out.push({ agent, epoch: claim.epoch, lastSeq: 0, lastSeen: claim.since, received: 0, gaps: [tail] });
      } else {
        out[at as number] = { ...stored, gaps: [...stored.gaps, tail] };
      }
    }
    return out;
  }
}
