import type { Environment } from '@marcbachmann/cel-js';

/**
 * A cost bound on one rule's evaluation. The CEL library bounds a rule's
 * size when it parses it (maxAstNodes, maxDepth), but not the work it does
 * on an event: `data.items.exists(x, data.items.exists(y, x + y == -1))` on
 * one 64 KiB event of 32,000 numbers is 10⁹ steps, minutes during which the
 * whole gateway (every listener, every other event) stood still; a third
 * nesting level, or a `map` of a `map`, and it never ended or ran out of
 * memory. cel-go (Kubernetes' CEL) has a runtime cost limit; this is one.
 *
 * Every node the evaluator runs costs 1, plus the size of what it yields
 * when that is a list (its length), a map (its size) or a long string (one
 * per 64 characters) — so a native scan (`x in list`, `==` of two lists,
 * `s.contains(t)`) inside a loop is paid for too. The accumulator of `map`
 * and `filter` is not charged at each step (that would make a linear rule
 * quadratic); the list it becomes is, once. Past the budget every further
 * node throws at once, so what remains of the loops under way ends in
 * steps of one, and the rule's verdict is an error: not matched.
 *
 * The hook: the library evaluates every child node through its evaluator's
 * `run` (one evaluator per Environment), so wrapping that instance's `run`
 * meters exactly this environment's programs.
 */
export class CostMeter {
  private left = Number.POSITIVE_INFINITY;
  private overBudget = false;
  /**
   * Thrown at every node past the budget: one object, made once. A loop under way goes on through its
   * items (a quantifier keeps the first error and tries the rest), and a new Error each time — a stack
   * captured per item — made running out cost more than the budget itself (≈0.4 s for 32,000 items).
   */
  private readonly exceeded: Error;

  constructor(
    env: Environment,
    /** Cost units one rule may spend on one event. */
    readonly limit: number,
  ) {
    this.exceeded = new CostExceeded(limit);
    meterEvaluator(env, this);
  }

  /** Starts one rule's run on one event with the whole budget. */
  start(): void {
    this.left = this.limit;
    this.overBudget = false;
  }

  /** Ends it: true when it ran out (its value or error is then not the rule's verdict). Outside a run nothing is charged. */
  end(): boolean {
    this.left = Number.POSITIVE_INFINITY;
    return this.overBudget;
  }

  /** Called before each node: throws once the budget is spent. */
  charge(units: number): void {
    this.left -= units;
    if (this.left < 0) {
      this.overBudget = true;
      throw this.exceeded;
    }
  }

  /** Charged after a node, for the size of its value. */
  chargeSize(units: number): void {
    this.left -= units;
  }
}

/** What a rule's error says when it ran out (counted in rule_errors_total, logged as any rule error). */
export function costExceededMessage(limit: number): string {
  return `the condition exceeded its cost limit (pipeline.ruleCostLimit, ${limit}); taken as no match`;
}

class CostExceeded extends Error {
  constructor(limit: number) {
    super(costExceededMessage(limit));
  }
}

/** Accumulator steps of map/filter/exists_one: they yield the growing accumulator, charged once as the result. */
const UNCHARGED_OPS = new Set(['accuPush', 'accuValue', 'accuInc']);

type Run = (ast: { op?: string }, ctx: unknown) => unknown;
interface Evaluator {
  run: Run;
}
interface RootNode {
  evaluate?: (ev: Evaluator, ast: unknown, ctx: unknown) => unknown;
}

function meterEvaluator(env: Environment, meter: CostMeter): void {
  // The evaluator is private to the Environment: a first program hands it to its root node, caught there once.
  const probe = env.parse('true') as unknown as ((ctx: object) => unknown) & { ast: RootNode };
  let evaluator: Evaluator | undefined;
  const root = probe.ast;
  const proto = Object.getPrototypeOf(root) as Required<RootNode>;
  root.evaluate = function (this: RootNode, ev, ast, ctx) {
    evaluator = ev;
    delete root.evaluate;
    return proto.evaluate.call(this, ev, ast, ctx);
  };
  probe({});
  if (evaluator === undefined || typeof evaluator.run !== 'function') {
    // A library update changed how it evaluates: refuse to start rather than run rules without a bound.
    throw new Error('the CEL library no longer evaluates through Evaluator.run: rules cannot be cost-bounded');
  }
  const run = evaluator.run;
  evaluator.run = function (this: Evaluator, ast, ctx) {
    meter.charge(1);
    const value = run.call(this, ast, ctx);
    if (typeof value !== 'object' || value === null) {
      if (typeof value === 'string' && value.length >= 64) meter.chargeSize(value.length >> 6);
    } else if (Array.isArray(value)) {
      if (!UNCHARGED_OPS.has(ast.op ?? '')) meter.chargeSize(value.length);
    } else if (value instanceof Map) meter.chargeSize(value.size);
    return value;
  };
}
