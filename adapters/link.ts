/**
 * The link of an adapter to its network, with reconnect and exponential backoff. Every adapter has
 * one: a KNX/IP tunnel, a ZigBee coordinator, an OpenWebNet gateway session and a BLE radio all
 * drop and come back, and a gateway must ride that out without the operator. The adapter supplies
 * `open` (connect, resolve once usable) and reports `lost` when the native library says the link
 * broke; the Link retries `open` with backoff (full jitter) until `close`.
 */
import { z } from 'zod';
import type { LinkState } from './contract.ts';

/** Backoff settings shared by every adapter's config (`backoff:`). */
export const backoffSchema = z
  .object({
    /** First retry delay. */
    initialMs: z.number().int().min(1).default(500),
    /** Upper bound of a retry delay. */
    maxMs: z.number().int().min(1).default(30_000),
    /** Growth per failed attempt. */
    factor: z.number().min(1).default(2),
  })
  .default({ initialMs: 500, maxMs: 30_000, factor: 2 });
/** Validated backoff settings. */
export type BackoffConfig = z.output<typeof backoffSchema>;

/** The delay before retry number `attempt` (1-based): exponential, capped, with full jitter in its upper half. */
export function backoffDelay(cfg: BackoffConfig, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(cfg.maxMs, cfg.initialMs * cfg.factor ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** What a Link needs from its adapter. */
export interface LinkDriver {
  /** Opens the link; resolves when it is usable, rejects when this attempt failed. */
  open(): Promise<void>;
  /** Closes whatever `open` created (also after a failed or lost attempt); must not throw. */
  close(): Promise<void>;
}

/** A reconnecting link. */
export class Link {
  private current: LinkState = 'stopped';
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private opening: Promise<void> | undefined;
  /** Connections made so far (1 after the first success); reconnects are `connects - 1`. */
  connects = 0;
  /** Why the link last failed, for the tree and logs. */
  lastError = '';

  constructor(
    private readonly driver: LinkDriver,
    private readonly backoff: BackoffConfig,
    private readonly onState: (state: LinkState, detail?: string) => void = () => {},
  ) {}

  /** The state now. */
  get state(): LinkState {
    return this.current;
  }

  private set(state: LinkState, detail?: string): void {
    if (state === this.current && detail === undefined) return;
    this.current = state;
    this.onState(state, detail);
  }

  /** Starts connecting; resolves after the first attempt, whether it succeeded or is backing off. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    await this.tryOpen();
  }

  /** Resolves once the link is connected (or rejects after `ms`). */
  async connected(ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.current !== 'connected') {
      if (!this.running) throw new Error('link stopped');
      if (Date.now() > deadline) throw new Error(`link not connected after ${ms} ms: ${this.lastError || this.current}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private async tryOpen(): Promise<void> {
    if (!this.running) return;
    this.set('connecting');
    const attempt = (async () => {
      try {
        await this.driver.open();
        if (!this.running) {
          await this.driver.close();
          return;
        }
        this.attempt = 0;
        this.connects++;
        this.lastError = '';
        this.set('connected');
      } catch (err) {
        this.lastError = String((err as Error)?.message ?? err);
        await this.driver.close();
        this.schedule(this.lastError);
      }
    })();
    this.opening = attempt;
    await attempt;
    this.opening = undefined;
  }

  private schedule(reason: string): void {
    if (!this.running) return;
    this.attempt++;
    const delay = backoffDelay(this.backoff, this.attempt);
    this.set('backoff', `${reason}; retry ${this.attempt} in ${delay} ms`);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.tryOpen();
    }, delay);
  }

  /** The native library reports the link broke: close what is left and reconnect with backoff. */
  lost(reason: string): void {
    if (!this.running || this.current !== 'connected') return;
    this.lastError = reason;
    void this.driver.close().then(() => this.schedule(reason));
  }

  /** Stops for good: no more retries, the link closed. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.opening?.catch(() => {});
    await this.driver.close();
    this.set('stopped');
  }
}
