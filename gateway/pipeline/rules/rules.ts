import v8 from 'node:v8';
import { Environment } from '@marcbachmann/cel-js';
import type { AuditEvent, IngestInfo } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';
import { MATCHES_FUNCTION, rewriteTypeIdentifier, TYPE_VARIABLE } from './cel-source.js';
import { CostMeter, costExceededMessage } from './cost-meter.js';

/**
 * Cost units one rule may spend on one event (pipeline.ruleCostLimit; cost-meter.ts). A loop costs the list's
 * length plus 3–5 per element it visits (its body's nodes), so the default lets a rule visit ≈20,000 elements, or
 * every pair of a list of ≈150; a rule that spends all of it takes ≈10–20 ms on a 2-core box.
 */
export const DEFAULT_RULE_COST_LIMIT = 100_000;

/** A rule as configured (DESIGN §5 `pipeline.rules`). */
export interface RuleConfig {
  readonly name: string;
  /** CEL over the event's fields (`type == "auth.login" && outcome == "failure"`), plus `event`, `ingest`, `tags`. */
  readonly if: string;
  readonly tag?: string | undefined;
  readonly alert?: boolean | undefined;
  readonly drop?: boolean | undefined;
}

export interface RuleVerdict {
  tags: string[];
  /** Names of matched rules with `alert: true`. */
  alerts: string[];
  /** Name of the first matched rule with `drop: true`. */
  droppedBy: string | undefined;
  /** Rules whose evaluation failed for this event (a type mismatch): they count as not matched. */
  errors: Array<{ rule: string; message: string }>;
}

/** What a rule sees as `ingest`: the pipeline gives all of the stored event's `ingest` (receivedAt and gateway too). */
export type RuleIngest = Pick<IngestInfo, 'method' | 'peer' | 'integrity'> & Partial<IngestInfo>;

type Program = (context: Record<string, unknown>) => unknown;

interface CompiledRule {
  config: RuleConfig;
  program: Program;
}

const ENVELOPE_FIELDS = ['id', 'source', 'time', 'actor', 'action', 'target', 'outcome', 'data', 'agent', 'epoch', 'seq', 'prev', 'hash'] as const;

// The `l` flag (V8's linear-time engine: no backtracking, so no backreferences or lookaround, as in RE2).
v8.setFlagsFromString('--enable-experimental-regexp-engine');

/** Patterns compiled for `matches`: rules name a few, each used on every event. */
const patterns = new Map<string, RegExp>();
const MAX_PATTERNS = 1000;

/** CEL `matches` (RE2 semantics: time linear in the text); a pattern the linear engine cannot run is an evaluation error. */
function linearMatches(text: string, pattern: string): boolean {
  let re = patterns.get(pattern);
  if (re === undefined) {
    re = new RegExp(pattern, 'l');
    if (patterns.size >= MAX_PATTERNS) patterns.clear();
    patterns.set(pattern, re);
  }
  return re.test(text);
}

function environment(): Environment {
  const env = new Environment({ unlistedVariablesAreDyn: false });
  for (const name of [...ENVELOPE_FIELDS, TYPE_VARIABLE, 'event', 'ingest', 'tags']) env.registerVariable(name, 'dyn');
  env.registerFunction(`string.${MATCHES_FUNCTION}(string): bool`, linearMatches);
  env.registerFunction(`${MATCHES_FUNCTION}(string, string): bool`, linearMatches);
  return env;
}

/**
 * The rules stage: every `if` compiles once at start (a bad one is a config
 * error naming the rule); per event, every rule runs in order and its
 * actions add up — tags accumulate, alerts are collected, and the first
 * matching `drop` rule rejects the event (recorded in custody, never silent).
 */
export class Rules {
  private readonly rules: CompiledRule[];
  private readonly meter: CostMeter;

  constructor(configs: readonly RuleConfig[], { costLimit = DEFAULT_RULE_COST_LIMIT }: { costLimit?: number | undefined } = {}) {
    const env = environment();
    this.meter = new CostMeter(env, costLimit);
    this.rules = configs.map((config) => {
      let program: Program & { check(): { valid: boolean; error?: Error } };
      try {
        program = env.parse(rewriteTypeIdentifier(config.if)) as unknown as typeof program;
      } catch (err) {
        throw GatewayErrors.METEORZX_RULE_INVALID(`rule "${config.name}": ${firstLine(err)}`, { cause: err, userError: true });
      }
      const checked = program.check();
      if (!checked.valid) {
        throw GatewayErrors.METEORZX_RULE_INVALID(`rule "${config.name}": ${firstLine(checked.error)}`, { userError: true });
      }
      if (config.tag === undefined && config.alert !== true && config.drop !== true) {
        throw GatewayErrors.METEORZX_RULE_INVALID(`rule "${config.name}" does nothing: give tag, alert or drop`, { userError: true });
      }
      return { config, program };
    });
  }

  get size(): number {
    return this.rules.length;
  }

  evaluate(event: AuditEvent, ingest: RuleIngest): RuleVerdict {
    const verdict: RuleVerdict = { tags: [], alerts: [], droppedBy: undefined, errors: [] };
    if (this.rules.length === 0) return verdict;
    const context = celContext(event, ingest, verdict.tags); // later rules see earlier rules' tags
    for (const { config, program } of this.rules) {
      // Bounded: a rule looping over an event's lists must not stall every other event (cost-meter.ts).
      let matched: unknown;
      let failed: unknown;
      this.meter.start();
      try {
        matched = program(context);
      } catch (err) {
        failed = err ?? new Error('unknown error');
      }
      if (this.meter.end()) {
        verdict.errors.push({ rule: config.name, message: costExceededMessage(this.meter.limit) });
        continue;
      }
      if (failed !== undefined) {
        verdict.errors.push({ rule: config.name, message: firstLine(failed) });
        continue;
      }
      if (matched !== true) continue;
      if (config.tag !== undefined && !verdict.tags.includes(config.tag)) verdict.tags.push(config.tag);
      if (config.alert === true) verdict.alerts.push(config.name);
      if (config.drop === true && verdict.droppedBy === undefined) verdict.droppedBy = config.name;
    }
    return verdict;
  }
}

/** Absent fields are null (not unknown variables), so `outcome == "failure"` is simply false without one. */
function celContext(event: AuditEvent, ingest: RuleIngest, tags: string[]): Record<string, unknown> {
  const context: Record<string, unknown> = { event, ingest, tags, [TYPE_VARIABLE]: event.type };
  for (const field of ENVELOPE_FIELDS) context[field] = event[field] ?? null;
  if (context.data === null) context.data = {};
  return context;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? 'unknown error';
}
