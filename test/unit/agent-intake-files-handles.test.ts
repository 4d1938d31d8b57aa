import { describe, expect, it } from 'vitest';
import { HandleBudget } from '../../agent/intake/files/handle-budget.js';
import { defaultMaxOpenFiles, openFileLimit } from '../../agent/intake/files/open-file-limit.js';

describe('HandleBudget', () => {
  it('lets paths open while handles are free, then serves those that wait first come first, none skipped', () => {
    let open = 0;
    const budget = new HandleBudget({ limit: 2, open: () => open, now: () => 0 });
    expect(budget.mayOpen('a')).toBe(true);
    open += 1;
    expect(budget.mayOpen('b')).toBe(true);
    open += 1;
    expect(budget.mayOpen('c')).toBe(false);
    expect(budget.mayOpen('d')).toBe(false);
    expect(budget.shortfall).toBe(2);
    // One handle given back: c asked first, so d (and a newcomer) still wait.
    open -= 1;
    expect(budget.next()).toEqual(['c']);
    expect(budget.mayOpen('d')).toBe(false);
    expect(budget.mayOpen('e')).toBe(false);
    expect(budget.mayOpen('c')).toBe(true);
    open += 1;
    // Paths that no longer need a handle leave the line.
    budget.prune((key) => key !== 'd');
    open -= 2;
    expect(budget.next()).toEqual(['e']);
  });

  it('warns when paths start waiting, at most once a minute while they do, and says when none waits', () => {
    const logged: string[] = [];
    const logger = { warn: (_: unknown, msg: string) => logged.push(`warn ${msg}`), info: (_: unknown, msg: string) => logged.push(`info ${msg}`) };
    let now = 0;
    const budget = new HandleBudget({ limit: 1, open: () => 1, now: () => now, logger: logger as never });
    budget.mayOpen('a');
    budget.report();
    now = 30_000;
    budget.report();
    now = 61_000;
    budget.report();
    budget.prune(() => false);
    budget.report();
    expect(logged.map((l) => l.split(':')[0])).toEqual(['warn intake.maxOpenFiles reached', 'warn intake.maxOpenFiles reached', 'info no followed file waits for a handle any more']);
  });
});

describe('defaultMaxOpenFiles', () => {
  it('is a quarter of the soft open-file limit, read from /proc/self/limits; 1024 assumed where it cannot be read', () => {
    const limits = 'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            256                  4096                 files     \n';
    expect(openFileLimit(() => limits)).toBe(256);
    expect(defaultMaxOpenFiles(openFileLimit(() => limits))).toBe(64);
    expect(defaultMaxOpenFiles(1024)).toBe(256);
    expect(openFileLimit(() => 'Max open files            unlimited            unlimited            files\n')).toBe(Number.MAX_SAFE_INTEGER);
    expect(
      openFileLimit(() => {
        throw new Error('ENOENT');
      }),
    ).toBe(1024);
    expect(defaultMaxOpenFiles(20)).toBe(8);
  });
});
