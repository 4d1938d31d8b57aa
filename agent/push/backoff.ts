/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential
 * Backoff And Jitter"): the delay is uniform in [0, min(max, initial · 2^n)].
 * Full jitter spreads a fleet of agents that all lost the same gateway, so
 * they do not come back in lock-step when it returns.
 */
export interface BackoffOptions {
  /** Ceiling of the first retry's delay, ms. */
  initialMs: number;
  /** Largest ceiling, ms; reached after log2(max/initial) failures. */
  maxMs: number;
  /** Uniform [0, 1); injectable so tests can pin the jitter. */
  random?: () => number;
}

export class Backoff {
  private failures = 0;
  private readonly random: () => number;

  constructor(private readonly options: BackoffOptions) {
    this.random = options.random ?? Math.random;
  }

  /** The delay before the next attempt, after one more failure. */
  next(): number {
    const ceiling = this.ceiling(this.failures);
    this.failures += 1;
    return Math.floor(this.random() * ceiling);
  }

  /** Ceiling of the delay after `failures` earlier failures (for docs and tests). */
  ceiling(failures: number): number {
    // Cap the exponent: 2^31 already exceeds any sane maxMs and keeps the product finite.
    return Math.min(this.options.maxMs, this.options.initialMs * 2 ** Math.min(failures, 31));
  }

  reset(): void {
    this.failures = 0;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }
}
