/**
 * The adapter Link: reconnect with capped, jittered exponential backoff; a lost link is closed and
 * reopened; stop() cancels retries and closes; state changes are reported in order.
 */
import { describe, expect, it } from 'vitest';
import type { LinkState } from '../../adapters/contract.ts';
import { backoffDelay, backoffSchema, Link, type LinkDriver } from '../../adapters/link.ts';

/** A driver whose open fails `failures` times, counting opens and closes. */
function driver(failures: number): LinkDriver & { opens: number; closes: number; open_: boolean } {
  const d = {
    opens: 0,
    closes: 0,
    open_: false,
    async open() {
      d.opens++;
      if (d.opens <= failures) throw new Error(`refused ${d.opens}`);
      d.open_ = true;
    },
    async close() {
      d.closes++;
      d.open_ = false;
    },
  };
  return d;
}

const fast = backoffSchema.parse({ initialMs: 10, maxMs: 40, factor: 2 });

describe('backoff', () => {
  it('grows by the factor, stays within [ceiling/2, ceiling], and is capped', () => {
    const cfg = backoffSchema.parse({ initialMs: 100, maxMs: 1000, factor: 2 });
    const lo = (a: number) => backoffDelay(cfg, a, () => 0);
    const hi = (a: number) => backoffDelay(cfg, a, () => 1);
    expect([1, 2, 3, 4, 5, 6].map(hi)).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect([1, 2, 3, 4, 5, 6].map(lo)).toEqual([50, 100, 200, 400, 500, 500]);
    for (let a = 1; a < 20; a++) {
      const v = backoffDelay(cfg, a);
      expect(v).toBeGreaterThanOrEqual(50);
      expect(v).toBeLessThanOrEqual(1000);
    }
  });
});

describe('Link', () => {
  it('retries a refused open with backoff until it connects, reporting each state', async () => {
    const d = driver(3);
    const states: [LinkState, string | undefined][] = [];
    const link = new Link(d, fast, (s, detail) => states.push([s, detail]));
    await link.start();
    expect(link.state).toBe('backoff');
    await link.connected(2000);
    expect(d.opens).toBe(4);
    expect(d.closes).toBe(3); // every failed attempt is cleaned up
    expect(link.connects).toBe(1);
    expect(states.map(([s]) => s)).toEqual(['connecting', 'backoff', 'connecting', 'backoff', 'connecting', 'backoff', 'connecting', 'connected']);
    expect(states[1]![1]).toMatch(/refused 1; retry 1 in \d+ ms/);
    await link.stop();
    expect(link.state).toBe('stopped');
    expect(d.open_).toBe(false);
  });

  it('a lost link is closed and reopened; stop() during backoff cancels the retry', async () => {
    const d = driver(0);
    const link = new Link(d, backoffSchema.parse({ initialMs: 300, maxMs: 300, factor: 1 }));
    await link.start();
    expect(link.state).toBe('connected');
    link.lost('tunnel dropped');
    await new Promise((r) => setTimeout(r, 20));
    expect(link.state).toBe('backoff');
    expect(link.lastError).toBe('tunnel dropped');
    expect(d.open_).toBe(false);
    await link.stop();
    const opens = d.opens;
    await new Promise((r) => setTimeout(r, 400));
    expect(d.opens).toBe(opens); // no retry after stop
    expect(link.state).toBe('stopped');
    await expect(link.connected(50)).rejects.toThrow(/stopped/);
  });

  it('reconnects after a loss and counts it', async () => {
    const d = driver(0);
    const link = new Link(d, fast);
    await link.start();
    link.lost('gone');
    await new Promise((r) => setTimeout(r, 5));
    expect(link.state).not.toBe('connected');
    await link.connected(2000);
    expect(link.connects).toBe(2);
    expect(d.opens).toBe(2);
    await link.stop();
  });
});
