/**
 * A counting semaphore: caps how many operations run at once (radios and tunnels are scarce, and a
 * fanout must not open thousands of southbound sessions together). FIFO, no timers, no allocation
 * per call beyond a queued resolver when full.
 */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private head = 0;

  /** A limiter admitting `max` operations at once (Infinity: no cap). */
  constructor(public max: number) {
    if (!(max >= 1)) throw new RangeError(`a limiter needs max >= 1, got ${max}`);
  }

  /** Operations running now. */
  get running(): number {
    return this.active;
  }

  /** Operations waiting for a slot. */
  get queued(): number {
    return this.waiting.length - this.head;
  }

  /** Runs `fn` when a slot is free; the slot is released when it settles. */
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  private release(): void {
    if (this.head < this.waiting.length) {
      // The slot passes straight to the next waiter (active stays the same).
      const next = this.waiting[this.head]!;
      this.waiting[this.head++] = undefined as unknown as () => void;
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting.splice(0, this.head);
        this.head = 0;
      }
      next();
    } else this.active--;
  }
}
