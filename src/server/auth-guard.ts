/**
 * Slowing down password guessing (issue "Security and reliability", SECACATE-001): failed
 * authentications are counted per account and per source address. Each failure after
 * `freeAttempts` takes the next free slot of its keys, `baseMs` doubling per further failure up to
 * `maxMs`, and its 401 is held until that slot: guesses against one account (or from one address)
 * cannot go faster than one per slot, however many sessions run in parallel, while a legitimate
 * device whose nonce went stale still gets its challenge and gets in on the next message (a hard
 * lockout would let an attacker keep the owner out). A success clears the account and the address.
 * State is in memory, bounded by `maxKeys` (least recently failed keys are dropped first).
 */

/** Tuning of the guard. */
export interface AuthGuardOptions {
  /** Failures answered at once before replies are held (default 3). */
  freeAttempts?: number;
  /** First hold, milliseconds (default 1000); doubles per further failure. */
  baseMs?: number;
  /** Longest step between slots (default 30,000 ms). */
  maxMs?: number;
  /** A key with no failure for this long is forgotten (default 15 minutes). */
  forgetAfterMs?: number;
  /** Most keys remembered (default 10,000). */
  maxKeys?: number;
  now?: () => number;
}

interface Entry {
  failures: number;
  /** The last slot handed out (ms since epoch). */
  slot: number;
  last: number;
}

/** What `failure` decided: how long to hold the failure reply, and the keys that caused it. */
export interface GuardVerdict {
  /** Milliseconds to hold the 401 (0: answer at once). */
  delayMs: number;
  /** Failures counted so far, per key. */
  failures: Record<string, number>;
}

/** Per-account and per-address failure counting with exponentially spaced reply slots. */
export class AuthGuard {
  private readonly entries = new Map<string, Entry>();
  private readonly free: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly forgetAfterMs: number;
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(opts: AuthGuardOptions = {}) {
    this.free = opts.freeAttempts ?? 3;
    this.baseMs = opts.baseMs ?? 1000;
    this.maxMs = opts.maxMs ?? 30_000;
    this.forgetAfterMs = opts.forgetAfterMs ?? 15 * 60_000;
    this.maxKeys = opts.maxKeys ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** Records a failed authentication for each key; returns how long to hold its reply. */
  failure(keys: string[]): GuardVerdict {
    const t = this.now();
    let delayMs = 0;
    const failures: Record<string, number> = {};
    for (const key of keys) {
      let e = this.entries.get(key);
      if (!e || t - e.last > this.forgetAfterMs) e = { failures: 0, slot: 0, last: t };
      e.failures++;
      e.last = t;
      failures[key] = e.failures;
      const over = e.failures - this.free;
      if (over > 0) {
        // The next slot after the last one handed out: parallel guesses queue up behind each other.
        e.slot = Math.max(t, e.slot) + Math.min(this.maxMs, this.baseMs * 2 ** (over - 1));
        delayMs = Math.max(delayMs, e.slot - t);
      }
      this.entries.delete(key); // re-insert: Map order is the eviction order (least recent first)
      this.entries.set(key, e);
    }
    this.evict();
    return { delayMs, failures };
  }

  /** A successful authentication clears its keys. */
  success(keys: string[]): void {
    for (const k of keys) this.entries.delete(k);
  }

  /** Keys currently remembered (for tests and metrics). */
  get size(): number {
    return this.entries.size;
  }

  private evict(): void {
    while (this.entries.size > this.maxKeys) this.entries.delete(this.entries.keys().next().value as string);
  }
}
