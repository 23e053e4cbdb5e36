/**
 * Smoke test of the hierarchy benchmark (bench/hierarchy.bench.ts) in quick mode (160 devices, one
 * run per case), run as a child process the way `npm run bench` runs it: every stdout line is JSON,
 * every figure is there with the documented fields, and every device was read in both cases (the
 * bench itself checks each value and exits non-zero otherwise). No timing assertions.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { hierarchyOptionsFromEnv } from '../../bench/hierarchy.bench.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);
const N = 160;

const FIGURES = ['hierarchy.get', 'hierarchy.server_messages', 'hierarchy.get_per_device', 'hierarchy.rss'] as const;
const UNITS: Record<string, string> = {
  'hierarchy.get': 'ms',
  'hierarchy.server_messages': 'messages',
  'hierarchy.get_per_device': 'µs/device',
  'hierarchy.rss': 'MB',
};
const positive = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x > 0;

describe('hierarchy benchmark (quick mode)', () => {
  it('reads every device through the gateway tree and directly, and prints one JSON line per figure', { timeout: 60_000 }, async () => {
    const env = { ...process.env, GWMO_BENCH_HN: '', GWMO_BENCH_HRUNS: '' };
    const { stdout, stderr } = await run(process.execPath, ['bin/run-ts.js', 'bench/hierarchy.bench.ts', '--quick'], { cwd: ROOT, env, maxBuffer: 16 * 1024 * 1024, timeout: 55_000 });
    const [machine, ...figures] = stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(machine).toMatchObject({ name: 'machine', bench: 'hierarchy', hns: [N], runs: 1 });
    expect(figures.map((f) => f.name)).toEqual([...FIGURES]);
    for (const f of figures) {
      const name = String(f.name);
      expect(f, name).toMatchObject({ n: N, unit: UNITS[name] });
      for (const k of ['value', 'baseline', 'ratio'] as const) expect(positive(f[k]), `${name}.${k} = ${String(f[k])}`).toBe(true);
      const expected = (f.value as number) / (f.baseline as number);
      if (name !== 'hierarchy.get_per_device') expect(Math.abs((f.ratio as number) - expected) / expected, `${name}.ratio`).toBeLessThan(0.01);
    }
    const byName = Object.fromEntries(figures.map((f) => [String(f.name), f]));
    // Direct: one Package 0 and at least two DM requests (Package 1, Package 3) per device.
    const m = byName['hierarchy.server_messages']!;
    expect(m.baselinePackage0).toBe(N);
    expect(m.baselineDm as number).toBeGreaterThanOrEqual(2 * N);
    expect(m.baseline).toBe((m.baselineDm as number) + (m.baselinePackage0 as number));
    expect(m.baselineApi).toBe(N);
    // Hierarchy: a few sessions with gw-top, whatever n; the phases add up to the DM requests.
    expect(m.value).toBe((m.dm as number) + (m.package0 as number));
    const phases = m.phases as Record<string, number>;
    expect(phases.define! + phases.alert! + phases.read!).toBe(m.dm);
    expect(m.value as number).toBeLessThan(N / 4);
    expect(m.api).toBe(2);
    expect(stderr).toMatch(/hierarchy bench done in/);
  });

  it('takes its sizes from GWMO_BENCH_HN (160 in quick mode) and refuses bad ones', () => {
    expect(hierarchyOptionsFromEnv({})).toMatchObject({ ns: [1000, 10_000], runs: 3, read: 'report' });
    expect(hierarchyOptionsFromEnv({}, true)).toMatchObject({ ns: [160], runs: 1 });
    expect(hierarchyOptionsFromEnv({ GWMO_BENCH_HN: '320, 1000', GWMO_BENCH_HRUNS: '5', GWMO_BENCH_HREAD: 'results' })).toMatchObject({ ns: [320, 1000], runs: 5, read: 'results' });
    expect(() => hierarchyOptionsFromEnv({ GWMO_BENCH_HN: '10k' })).toThrow(/bad size list/);
    expect(() => hierarchyOptionsFromEnv({ GWMO_BENCH_HN: '8' })).toThrow(/bad size list/);
    expect(() => hierarchyOptionsFromEnv({ GWMO_BENCH_HREAD: 'all' })).toThrow(/report or results/);
  });
});
