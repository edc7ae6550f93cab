/**
 * Wakes everyone waiting for "something changed": each waiter re-checks its own condition after
 * waking, so one signal serves producers and consumers of the same queue alike.
 */
export class ChangeSignal {
  private waiters: (() => void)[] = [];

  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
