/**
 * No hang on exit: a process that starts the KNX adapter (with knxd and a simulated device), uses
 * it and stops it must exit by itself within a few seconds (npm `knx` leaves its socket and timers
 * alive after Disconnect(); the adapter's stop() releases them).
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('KNX adapter stop()', () => {
  it('lets the process exit by itself after start, a read, a write and stop', async () => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['bin/run-ts.js', 'adapters/knx/exit-check.ts'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    let doneAt = 0;
    child.stdout.on('data', () => {
      if (!doneAt && out.includes('KNX_EXIT_CHECK ok')) doneAt = Date.now();
    });
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(-1);
      }, 15_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code, out).toBe(0);
    expect(out).toContain('KNX_EXIT_CHECK ok 19.5');
    // From the last line printed to the process gone: nothing left holds the event loop.
    expect(Date.now() - doneAt, out).toBeLessThan(2000);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});
