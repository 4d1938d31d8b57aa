/**
 * A one-slot wake-up signal for a single waiting loop. A notify that comes
 * while nobody waits is remembered, so a wake-up between "check for work"
 * and "wait" is never lost.
 */
export class Wakeup {
  private pending = false;
  private resolve: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  notify(): void {
    const resolve = this.resolve;
    if (resolve === undefined) {
      this.pending = true;
      return;
    }
    this.resolve = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    resolve();
  }

  /** Resolves on the next notify, or after `ms` when given. */
  wait(ms?: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.resolve = resolve;
      if (ms !== undefined) {
        this.timer = setTimeout(() => {
          this.resolve = undefined;
          this.timer = undefined;
          resolve();
        }, Math.max(0, ms));
      }
    });
  }
}
