import type { PipelineAlert } from '../pipeline/options.js';

/**
 * What raises an alert (docs/config.md, `alerts`):
 * - `rule`: a pipeline rule with `alert: true` matched an event;
 * - `chain-break`: an event's agent hash chain did not verify on arrival;
 * - `pull-failed`: a pull connector failed after all its retries;
 * - `gap-lost`: backfill recorded a seq range as lost;
 * - `seq-gap`: a hole in an agent's seqs stayed open for `backfill.grace`;
 * - `volume-drop`: a source's events in a window fell under `volumeDrop.below` of the window before;
 * - `registry-repaired`: the store mended a damaged registry key (storage/level/registry-repair.ts).
 */
export const ALERT_KINDS = ['rule', 'chain-break', 'pull-failed', 'gap-lost', 'seq-gap', 'volume-drop', 'registry-repaired'] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

/** One alert, exactly as it is logged and as one element of a webhook POST. */
export interface Alert {
  kind: AlertKind;
  detail: string;
  /** When it was raised (RFC 3339); for an event alert, when the event was received. */
  at: string;
  /** The rule's name (kind `rule`). */
  rule?: string;
  /** The event's id, source and type (kinds `rule` and `chain-break`); `source` also for `volume-drop`. */
  id?: string;
  source?: string;
  type?: string;
  /** The pull connector's URL (`pull-failed`). */
  url?: string;
  /** The agent, its epoch and the seq range (`gap-lost`, `seq-gap`). */
  agent?: string;
  epoch?: string;
  from?: number;
  to?: number;
  /** `seq-gap`: when the hole opened (RFC 3339). */
  since?: string;
  /** `volume-drop`: the window's length in ms, and the source's accepted events two windows back, in the window before and in this one. */
  windowMs?: number;
  earlier?: number;
  previous?: number;
  current?: number;
  /** `registry-repaired`: the damaged key, and the key its bytes are kept under. */
  key?: string;
  quarantinedAs?: string;
}

/** The metric label of an alert: the rule's name for a rule alert, else its kind. */
export function alertLabel(alert: Alert): string {
  return alert.kind === 'rule' ? (alert.rule ?? '') : alert.kind;
}

/**
 * A pipeline alert as the sink takes it: the event is named (id, source,
 * type), not carried — an event may be up to `limits.maxEventBytes`, and it
 * is stored (GET /v1/events?id=…) unless a rule dropped it.
 */
export function eventAlert(a: PipelineAlert): Alert {
  const { event } = a;
  const id = event.id ?? '';
  const source = event.source ?? '';
  const detail =
    a.detail ?? (a.kind === 'rule' ? `rule "${a.rule ?? ''}" matched event ${id} (${event.type}) from ${source}` : `chain break on event ${id} from ${source}`);
  return { kind: a.kind, ...(a.rule === undefined ? {} : { rule: a.rule }), detail, id, source, type: event.type, at: a.at };
}
