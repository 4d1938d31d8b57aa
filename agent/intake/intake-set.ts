import { isDeepStrictEqual } from 'node:util';
import type { AgentConfig } from '../config.js';
import type { AgentMetrics } from '../metrics.js';
import type { IntakePlan } from './create-intakes.js';
import { releaseIntakeMeter } from './intake-meter.js';
import type { Intake } from './types.js';

interface Running {
  plan: IntakePlan;
  intake: Intake;
}

export interface IntakeChanges {
  started: string[];
  stopped: string[];
  kept: string[];
}

/**
 * The reading intakes of a running agent (files, syslog, serial ports, edge
 * broker), keyed by IntakePlan.key so a reload touches only what changed —
 * Fluent Bit-style hot reload. An intake whose spec is unchanged keeps
 * running: its sockets stay bound and nothing sent to it meanwhile is lost.
 * One that is removed or changed is closed first (appends in progress finish
 * or are given up unacknowledged; a file's offset stays in the buffer), so a
 * changed one can rebind its port, and is then started anew; the file intake
 * resumes from its checkpoint, so lines written while it was gone are read
 * once it is back.
 */
export class IntakeSet {
  private readonly running = new Map<string, Running>();
  private closed = false;

  constructor(private readonly options: { metrics?: AgentMetrics } = {}) {}

  /** Brings the set to `plans`: closes removed and changed intakes, then starts added and changed ones. */
  async apply(plans: readonly IntakePlan[]): Promise<IntakeChanges> {
    if (this.closed) throw new Error('intake set closed');
    const wanted = new Map(plans.map((p) => [p.key, p]));
    const changes: IntakeChanges = { started: [], stopped: [], kept: [] };
    for (const [key, run] of [...this.running]) {
      const next = wanted.get(key);
      if (next !== undefined && isDeepStrictEqual(next.spec, run.plan.spec)) {
        changes.kept.push(key);
        continue;
      }
      await this.stop(key, run);
      changes.stopped.push(key);
    }
    for (const plan of plans) {
      if (this.running.has(plan.key)) continue;
      const intake = await plan.create();
      try {
        await intake.start();
      } catch (err) {
        await intake.close().catch(() => undefined);
        throw err;
      }
      this.running.set(plan.key, { plan, intake });
      changes.started.push(plan.key);
    }
    return changes;
  }

  intakes(): Intake[] {
    return [...this.running.values()].map((r) => r.intake);
  }

  /** Closes every intake, in the order they were started. Idempotent. */
  async close(onError: (intake: Intake, err: unknown) => void): Promise<void> {
    this.closed = true;
    for (const [key, run] of [...this.running]) {
      try {
        await this.stop(key, run);
      } catch (err) {
        onError(run.intake, err);
      }
    }
  }

  private async stop(key: string, run: Running): Promise<void> {
    this.running.delete(key);
    await run.intake.close();
    // Several serial ports share the `serial` label: keep its series while one still runs.
    const name = run.intake.name;
    if (![...this.running.values()].some((r) => r.intake.name === name)) releaseIntakeMeter(this.options.metrics, name);
  }
}

/**
 * True when two agent configs differ in their reading intakes at most
 * (`intake.files`, `syslog`, `serial`, `mqtt`): then a reload can be done in
 * place. Anything else (id, buffer, push, pull, limits, the HTTP intake's
 * listener) needs the whole agent restarted on its buffer.
 */
export function onlyReadingIntakesDiffer(a: AgentConfig, b: AgentConfig): boolean {
  const outside = (c: AgentConfig) => ({ ...c, intake: { http: c.intake.http } });
  return isDeepStrictEqual(outside(a), outside(b));
}
