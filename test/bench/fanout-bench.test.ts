/**
 * Smoke test of the fanout benchmark (bench/fanout.bench.ts) at tiny sizes, run as a child process
 * the way `npm run bench` runs it: every stdout line is JSON, the machine line comes first, every
 * figure is there with the documented fields and positive numbers. No timing assertions.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { benchOptionsFromEnv } from '../../bench/fanout.bench.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

/** Runs the bench with the given environment; resolves with its output (rejects on a non-zero exit). */
function bench(env: Record<string, string>): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, ['--expose-gc', 'bin/run-ts.js', 'bench/fanout.bench.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    maxBuffer: 16 * 1024 * 1024,
    timeout: 150_000,
  });
}

const FIGURES = ['fanout.get', 'fanout.rate', 'association.spawn', 'association.heap', 'association.actor.heap', 'restore.ready'] as const;
/** Figures without a baseline: baseline and ratio are null. */
const NO_BASELINE = new Set(['association.spawn', 'association.heap', 'association.actor.heap']);
const UNITS: Record<string, string> = {
  'fanout.get': 'ms',
  'fanout.rate': 'devices/s',
  'association.spawn': 'ms',
  'association.heap': 'bytes/device',
  'association.actor.heap': 'bytes/actor',
  'restore.ready': 'ms',
};

const positive = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x > 0;

describe('fanout benchmark (tiny sizes)', () => {
  it('prints a machine line, then one JSON line per figure with name, n, value, unit, baseline and ratio', { timeout: 180_000 }, async () => {
    const { stdout, stderr } = await bench({ GWMO_BENCH_N: '200' });
    const lines = stdout.split('\n').filter((l) => l.trim() !== '');
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);

    const [machine, ...figures] = parsed;
    expect(machine!.name).toBe('machine');
    expect(typeof machine!.cpu).toBe('string');
    expect(positive(machine!.cores)).toBe(true);
    expect(machine!.node).toBe(process.version);
    expect(machine!.ns).toEqual([200]);

    expect(new Set(figures.map((f) => f.name))).toEqual(new Set(FIGURES));
    expect(figures).toHaveLength(FIGURES.length); // one size each
    for (const f of figures) {
      const name = String(f.name);
      for (const k of ['name', 'n', 'value', 'unit', 'baseline', 'ratio']) expect(f, `${name} has ${k}`).toHaveProperty(k);
      expect(f.unit, name).toBe(UNITS[name]);
      expect(Number.isInteger(f.n) && positive(f.n), `${name}.n = ${String(f.n)}`).toBe(true);
      expect(f.n, name).toBe(200);
      expect(positive(f.value), `${name}.value = ${String(f.value)}`).toBe(true);
      if (NO_BASELINE.has(name)) {
        expect(f.baseline, name).toBeNull();
        expect(f.ratio, name).toBeNull();
      } else {
        expect(positive(f.baseline), `${name}.baseline = ${String(f.baseline)}`).toBe(true);
        expect(positive(f.ratio), `${name}.ratio = ${String(f.ratio)}`).toBe(true);
        const expected = (f.value as number) / (f.baseline as number);
        expect(Math.abs((f.ratio as number) - expected) / expected, `${name}.ratio = ${String(f.ratio)}, value/baseline = ${expected}`).toBeLessThan(0.01);
      }
    }

    const byName = Object.fromEntries(figures.map((f) => [String(f.name), f]));
    // The job's time and its rate are the same measurement.
    const rate = (200 * 1000) / (byName['fanout.get']!.value as number);
    expect(Math.abs((byName['fanout.rate']!.value as number) - rate) / rate).toBeLessThan(0.01);
    // Restart: every run checked the inventory's answer; the baseline read every record.
    expect((byName['restore.ready']!.runs as number[]).length).toBe(3);
    expect(byName['fanout.get']!.usPerDevice).toBeGreaterThan(0);

    expect(stderr).toMatch(/calibrating fanout\.maxConcurrency/);
    expect(stderr).toMatch(/fanout bench done in/);
  });

  it('takes its sizes from GWMO_BENCH_N, and refuses bad ones', async () => {
    expect(benchOptionsFromEnv({})).toMatchObject({ ns: [1000, 10_000, 100_000], store: 'leveldb' });
    expect(benchOptionsFromEnv({ GWMO_BENCH_N: '1000, 10000', GWMO_BENCH_STORE: 'memory' })).toMatchObject({ ns: [1000, 10_000], store: 'memory' });
    expect(() => benchOptionsFromEnv({ GWMO_BENCH_N: '10k' })).toThrow(/bad size list/);
    expect(() => benchOptionsFromEnv({ GWMO_BENCH_STORE: 'redis' })).toThrow(/leveldb or memory/);
    await expect(bench({ GWMO_BENCH_N: '0' })).rejects.toMatchObject({ code: 1 });
  });
});
