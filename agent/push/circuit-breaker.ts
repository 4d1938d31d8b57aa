/**
 * A circuit breaker around the gateway link: after `threshold` consecutive
 * failures it opens and nothing is sent for `cooldownMs`; then one probe is
 * allowed (half-open); the probe's success closes it, its failure reopens it.
 * This bounds the attempts against a dead gateway to one per cool-down,
 * however much the buffer holds.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. */
  threshold: number;
  /** How long the circuit stays open before a probe, ms. */
  cooldownMs: number;
  now?: () => number;
}

export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private openedAt = 0;
  private readonly now: () => number;

  constructor(private readonly options: CircuitBreakerOptions) {
    // Monotonic: a wall clock stepped back would keep the circuit open for the length of the step.
    this.now = options.now ?? (() => performance.now());
  }

  /** Current state; moves open → half-open once the cool-down has passed. */
  get state(): BreakerState {
    if (this.current === 'open' && this.now() - this.openedAt >= this.options.cooldownMs) this.current = 'half-open';
    return this.current;
  }

  /** Ms until a probe is allowed (0 unless open). */
  remainingMs(): number {
    if (this.state !== 'open') return 0;
    return Math.max(0, this.openedAt + this.options.cooldownMs - this.now());
  }

  onSuccess(): void {
    this.failures = 0;
    this.current = 'closed';
  }

  onFailure(): void {
    this.failures += 1;
    // A failed probe reopens at once: the gateway is still not back.
    if (this.current === 'half-open' || this.failures >= this.options.threshold) {
      this.current = 'open';
      this.openedAt = this.now();
    }
  }
}
